"""Trades store on SQLite and PostgreSQL: insert-ignore, watermark, gaps."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command

from polytape.errors import StoreError
from polytape.normalize.trades import TradeRecord, normalize_trade_v1, normalize_trades
from polytape.store import Store, Tx
from polytape.store import engine as engine_mod
from polytape.store import schema as s
from polytape.store.trades import (
    add_gaps,
    clear_gaps,
    get_gaps,
    get_watermark,
    insert_trades,
    last_trade_ts_seen,
    load_watermark,
    merge_intervals,
    set_watermark,
    store_trades_page,
    subtract_interval,
)
from tests.conftest import PG_URL
from tests.support.fixtures import fixture_json

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def fixture_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = fixture_json("data_trades.json")
    return rows


def many(n: int, start: int = 1_780_000_000) -> list[TradeRecord]:
    """``n`` distinct fills shaped like the fixture's first row."""
    base = fixture_rows()[0]
    return [normalize_trade_v1({**base, "size": 1 + i, "timestamp": start + i // 3}, NOW) for i in range(n)]


def stored(store: Store) -> list[dict[str, Any]]:
    return store.fetch_all(sa.select(s.trades).order_by(s.trades.c.id))


def test_insert_is_idempotent_in_batches(store: Store) -> None:
    rows = many(250)  # the store fixture batches by 100
    assert store.write(lambda tx: insert_trades(tx, rows)) == 250
    assert store.write(lambda tx: insert_trades(tx, rows)) == 0
    mixed = [*rows[:50], *many(10, start=1_790_000_000), rows[0]]
    assert store.write(lambda tx: insert_trades(tx, mixed)) == 10
    assert store.count(s.trades) == 260


def test_stored_values_round_trip(store: Store) -> None:
    rows = [normalize_trade_v1(r, NOW) for r in fixture_rows()]
    store.write(lambda tx: insert_trades(tx, rows))
    got = stored(store)
    assert len(got) == 2
    for row, db in zip(rows, got, strict=True):
        for name, value in row.items():
            assert db[name] == value, name
        assert db["trade_ts"].tzinfo is not None


def test_optional_columns_may_be_missing_or_null(store: Store) -> None:
    raw = {**fixture_rows()[0], "transactionHash": None, "outcome": None, "outcomeIndex": None}
    row = normalize_trade_v1(raw, NOW)
    assert store.write(lambda tx: insert_trades(tx, [row])) == 1
    assert stored(store)[0]["transaction_hash"] is None


def test_page_with_rejects_commits_both(store: Store) -> None:
    good = fixture_rows()
    page = normalize_trades([good[0], {**good[1], "price": 7}], NOW, "data_api")
    assert store.write(lambda tx: store_trades_page(tx, page, NOW)) == 1
    rejected = store.fetch_all(sa.select(s.rejected_payloads))
    assert [(r["source"], r["reason"]) for r in rejected] == [("data:trades", "price is absurd: 7")]
    assert json.loads(rejected[0]["raw"])["price"] == 7


def test_last_trade_ts_seen(store: Store) -> None:
    assert last_trade_ts_seen(store) is None
    rows = many(9, start=1_780_000_000)
    store.write(lambda tx: insert_trades(tx, rows))
    newest = datetime.fromtimestamp(1_780_000_002, UTC)
    assert last_trade_ts_seen(store) == newest
    assert last_trade_ts_seen(store, "data_api") == newest
    assert last_trade_ts_seen(store, "backfill") is None
    assert store.write(lambda tx: last_trade_ts_seen(tx)) == newest
    assert store.read(lambda conn: last_trade_ts_seen(conn)) == newest


def test_watermark_moves_forward_only(store: Store) -> None:
    assert load_watermark(store) is None
    store.write(lambda tx: set_watermark(tx, 100, NOW))
    store.write(lambda tx: set_watermark(tx, 50, NOW + timedelta(seconds=1)))
    assert load_watermark(store) == 100
    assert store.write(get_watermark) == 100


def test_gaps_merge_and_clear(store: Store) -> None:
    store.write(lambda tx: add_gaps(tx, [(10, 20), (30, 40)], NOW))
    store.write(lambda tx: add_gaps(tx, [(21, 25), (35, 50)], NOW))
    assert store.write(get_gaps) == [(10, 25), (30, 50)]
    assert store.write(lambda tx: clear_gaps(tx, 15, 32, NOW)) == [(10, 14), (33, 50)]
    assert store.write(get_gaps) == [(10, 14), (33, 50)]


def test_interval_helpers() -> None:
    assert merge_intervals([(5, 9), (1, 3), (4, 4), (20, 30), (7, 8)]) == [(1, 9), (20, 30)]
    assert merge_intervals([(3, 1)]) == []
    assert subtract_interval([(1, 10)], 3, 5) == [(1, 2), (6, 10)]
    assert subtract_interval([(1, 10)], 0, 20) == []


def test_new_counts_are_exact_over_batches_and_calls_in_one_transaction(store: Store) -> None:
    rows = many(450)  # batches of 100: several per call, and the lock is taken once

    def write(tx: Tx) -> list[int]:
        return [
            insert_trades(tx, rows[:250]),
            insert_trades(tx, [*rows[200:350], rows[300], rows[0]]),  # overlap, repeats
            insert_trades(tx, rows[:350]),
            insert_trades(tx, rows[340:]),
        ]

    assert store.write(write) == [250, 100, 0, 100]
    assert store.count(s.trades) == 450
    assert {r["dedupe_key"] for r in stored(store)} == {r["dedupe_key"] for r in rows}


def test_a_rolled_back_insert_leaves_nothing_for_the_next_one(store: Store) -> None:
    rows = many(150)

    def fail(tx: Tx) -> None:
        assert insert_trades(tx, rows[:100]) == 100
        raise RuntimeError("the page's other writes failed")

    with pytest.raises(RuntimeError):
        store.write(fail)
    assert store.count(s.trades) == 0
    # the same session writes next: nothing staged by the failed transaction comes along
    assert store.write(lambda tx: insert_trades(tx, rows[100:])) == 50
    assert {r["dedupe_key"] for r in stored(store)} == {r["dedupe_key"] for r in rows[100:]}
    assert store.write(lambda tx: insert_trades(tx, rows)) == 100


def test_a_racing_writer_never_counts_a_trade_twice(store: Store, db_url: str) -> None:
    """Writer B looks up keys while A holds the same trades uncommitted: B's insert waits
    for A and ignores them, so each trade is counted by exactly one writer."""
    rows = many(300)
    mine, theirs = rows[:200], rows[100:]
    staged, release = threading.Event(), threading.Event()
    counts: dict[str, int] = {}

    def hold(tx: Tx) -> int:
        n = insert_trades(tx, mine)
        staged.set()
        release.wait(30)
        return n

    other = Store.open(db_url, batch_size=100)
    try:
        a = threading.Thread(target=lambda: counts.update(a=store.write(hold)))
        b = threading.Thread(
            target=lambda: counts.update(b=other.write(lambda tx: insert_trades(tx, theirs)))
        )
        a.start()
        assert staged.wait(30)
        b.start()
        time.sleep(0.5)  # let B reach its insert (it can only finish after A commits)
        assert "b" not in counts
        release.set()
        a.join(30)
        b.join(30)
    finally:
        release.set()
        other.close()
    assert counts == {"a": 200, "b": 100}
    assert store.count(s.trades) == 300


@pytest.mark.postgres
def test_trade_writers_of_other_schemas_do_not_wait(pg_url: str) -> None:
    """The trades lock is per database and schema: a writer holding it on one schema
    leaves a writer on another free."""
    from tests.conftest import pg_schema_url

    rows = many(50)
    other_schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {other_schema}")
    holding, release = threading.Event(), threading.Event()
    mine = Store.open(pg_url, batch_size=100)
    theirs = Store.open(pg_schema_url(other_schema), batch_size=100)

    def hold(tx: Tx) -> int:
        n = insert_trades(tx, rows)
        holding.set()
        release.wait(30)
        return n

    try:
        a = threading.Thread(target=lambda: mine.write(hold))
        a.start()
        assert holding.wait(30)
        started = time.monotonic()
        assert theirs.write(lambda tx: insert_trades(tx, rows)) == 50
        assert time.monotonic() - started < 10
        release.set()
        a.join(30)
        assert mine.count(s.trades) == 50 and theirs.count(s.trades) == 50
    finally:
        release.set()
        mine.close()
        theirs.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {other_schema} CASCADE")


@pytest.mark.postgres
def test_a_writer_bypassing_the_lock_costs_one_retry_not_a_duplicate(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A foreign writer that commits a trade between polytape's look-up and its copy makes
    the copy fail with a unique violation: the transaction is run again once, its look-up
    now finds that trade, and every trade is stored exactly once."""
    import polytape.store.trades as trades_mod

    rows = many(20)
    store = Store.open(pg_url, batch_size=100)
    real_values = trades_mod._values
    sneaked: list[int] = []
    attempts: list[int] = []

    def values(row: Any) -> list[Any]:
        if not sneaked:  # after the first look-up, before the first copied row
            sneaked.append(1)
            with (
                psycopg.connect(pg_url, autocommit=True) as conn,
                conn.cursor().copy(trades_mod._COPY_PG) as copy,
            ):
                copy.set_types(trades_mod._PG_TYPES)
                copy.write_row(real_values(rows[5]))
        return real_values(row)

    def write(tx: Tx) -> int:
        attempts.append(1)
        return insert_trades(tx, rows)

    monkeypatch.setattr(trades_mod, "_values", values)
    try:
        assert store.write(write) == 19
        assert len(attempts) == 2
        keys = [r["dedupe_key"] for r in stored(store)]
        assert sorted(keys) == sorted(r["dedupe_key"] for r in rows)

        # a unique violation that repeats is not a race: it is raised, not retried forever
        def always(tx: Tx) -> None:
            tx.conn.execute(sa.insert(s.trades), [{**rows[0], "id": 10**9}])

        with pytest.raises(StoreError):
            store.write(always)
    finally:
        store.close()


def test_unique_by_time_and_key_migration_keeps_rows(db_url: str) -> None:
    """0006 swaps UNIQUE (dedupe_key) and the trade_ts index for UNIQUE (trade_ts,
    dedupe_key); stored trades stay (ids too) and are still recognised as known."""
    rows = many(120)
    store = Store.open(db_url, migrate=False, batch_size=100)
    try:
        engine_mod.upgrade(store.engine, "0005")
        store.write(lambda tx: tx.conn.execute(sa.insert(s.trades), rows))
        before = stored(store)
        store.migrate()
        assert stored(store) == before
        inspector = sa.inspect(store.engine)
        uniques = [u["column_names"] for u in inspector.get_unique_constraints("trades")]
        indexes = {i["name"] for i in inspector.get_indexes("trades")}
        assert uniques == [["trade_ts", "dedupe_key"]]
        assert "ix_trades_trade_ts" not in indexes and "ix_trades_condition_id_trade_ts" in indexes
        assert store.write(lambda tx: insert_trades(tx, rows)) == 0
        assert store.write(lambda tx: insert_trades(tx, many(130))) == 10
        with store.engine.begin() as conn:
            cfg = engine_mod.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
        assert len(stored(store)) == 130
        assert [u["column_names"] for u in sa.inspect(store.engine).get_unique_constraints("trades")] == [
            ["dedupe_key"]
        ]
    finally:
        store.close()


def test_a_page_outside_the_stored_time_span_skips_the_look_up(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages newest first, as the feeds serve them: each one older than everything stored
    needs no look-up (the key includes the time); a page that overlaps the stored span is
    looked up, and the counts stay exact."""
    import contextlib

    looked_up: list[int] = []
    real = Tx.driver_cursor

    class Recording:
        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def execute(self, sql: str, *args: Any, **kw: Any) -> Any:
            if "dedupe_key FROM trades WHERE" in sql:
                looked_up.append(1)
            return self._cursor.execute(sql, *args, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    @contextlib.contextmanager
    def recording(self: Tx) -> Any:
        with real(self) as cursor:
            yield Recording(cursor)

    monkeypatch.setattr(Tx, "driver_cursor", recording)
    rows = sorted(many(300), key=lambda r: r["trade_ts"], reverse=True)  # distinct seconds per 3
    newest, older, oldest = rows[:99], rows[99:198], rows[198:]
    assert store.write(lambda tx: insert_trades(tx, newest)) == 99
    assert store.write(lambda tx: insert_trades(tx, older)) == 99
    assert looked_up == []  # an empty table, then a page older than all of it
    # overlapping: a re-read of known trades plus the next older ones
    assert store.write(lambda tx: insert_trades(tx, [*older[50:], *oldest])) == len(oldest)
    assert looked_up  # looked up, so the known half was not inserted again
    assert store.count(s.trades) == 300
