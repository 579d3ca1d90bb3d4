"""Store round trips and idempotency, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from polytape.errors import DatabaseRefused
from polytape.store import Store, Tx
from polytape.store import schema as s
from polytape.store.runs import (
    begin_job_run,
    finish_job_run,
    latest_runs,
    rejected_row,
)
from polytape.store.universe import add_manual, list_tracked, remove_manual
from polytape.store.workers import close_interrupted_runs
from tests.conftest import PG_URL

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def trade(i: int, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "dedupe_key": f"0xhash{i}|tok|w|BUY|10|0.5|{i}",
        "transaction_hash": f"0xhash{i}",
        "wallet": "0xw",
        "condition_id": "0xc",
        "token_id": "123",
        "side": "BUY",
        "outcome": "Yes",
        "outcome_index": 0,
        "size": 10.0,
        "price": 0.5,
        "usd_value": 5.0,
        "trade_ts": NOW - timedelta(seconds=i),
        "source": "test",
        "ingested_at": NOW,
    }
    row.update(kw)
    return row


def test_migrations_from_empty_reach_head(store: Store) -> None:
    assert store.is_current()
    names = set(sa.inspect(store.engine).get_table_names())
    expected = {
        "events", "markets", "market_tokens", "tags", "event_tags", "market_tags", "tracked_markets",
        "market_metrics_ts", "trades", "orderbooks", "orderbook_levels", "signal_events", "job_runs",
        "rejected_payloads", "sync_state",
    }  # fmt: skip
    assert expected <= names
    store.migrate()  # a second upgrade is a no-op
    assert store.is_current()


def test_insert_ignore_same_batch_twice_gives_same_rows(store: Store) -> None:
    batch = [trade(i) for i in range(250)]  # more than one chunk of 100
    assert store.insert_ignore(s.trades, batch) == 250
    assert store.insert_ignore(s.trades, batch) == 0
    assert store.count(s.trades) == 250
    # a batch that overlaps: only the new rows count
    assert store.insert_ignore(s.trades, [trade(i) for i in range(240, 260)]) == 10
    assert store.count(s.trades) == 260


def test_insert_ignore_duplicates_inside_one_batch(store: Store) -> None:
    assert store.insert_ignore(s.trades, [trade(1), trade(1), trade(2)]) == 2
    assert store.count(s.trades) == 2


def test_round_trip_keeps_types_and_utc(store: Store) -> None:
    store.insert_ignore(s.trades, [trade(7)])
    row = store.fetch_all(sa.select(s.trades))[0]
    assert row["trade_ts"] == NOW - timedelta(seconds=7)
    assert row["trade_ts"].tzinfo is not None
    assert isinstance(row["size"], float) and row["price"] == 0.5


def test_upsert_updates_and_is_idempotent(store: Store) -> None:
    rows = [{"tag_id": str(i), "label": f"L{i}", "slug": f"s{i}", "is_sport": False} for i in range(5)]
    store.upsert(s.tags, rows)
    store.upsert(s.tags, rows)
    assert store.count(s.tags) == 5
    store.upsert(s.tags, [{"tag_id": "3", "label": "new", "slug": "s3", "is_sport": True}])
    got = {r["tag_id"]: r for r in store.fetch_all(sa.select(s.tags))}
    assert got["3"]["label"] == "new" and got["3"]["is_sport"] is True
    assert got["2"]["label"] == "L2"


def test_upsert_last_row_wins_within_a_batch(store: Store) -> None:
    store.upsert(s.tags, [{"tag_id": "1", "label": "a"}, {"tag_id": "1", "label": "b"}])
    assert store.fetch_all(sa.select(s.tags.c.label)) == [{"label": "b"}]


def test_upsert_only_named_columns_and_expressions(store: Store) -> None:
    base = {
        "condition_id": "0xc",
        "gamma_market_id": "1",
        "neg_risk": True,
        "neg_risk_source": "clob",
        "first_seen_at": NOW,
        "updated_at": NOW,
    }
    store.upsert(s.markets, [base])
    later = dict(base, neg_risk=False, neg_risk_source="gamma", first_seen_at=NOW + timedelta(days=1))
    m = s.markets
    store.upsert(
        s.markets,
        [later],
        update=["neg_risk", "neg_risk_source", "updated_at"],
        set_exprs=lambda ex: {
            "neg_risk": sa.case((m.c.neg_risk_source == "clob", m.c.neg_risk), else_=ex.neg_risk),
            "neg_risk_source": sa.case(
                (m.c.neg_risk_source == "clob", m.c.neg_risk_source), else_=ex.neg_risk_source
            ),
        },
    )
    row = store.fetch_all(sa.select(s.markets))[0]
    assert row["neg_risk"] is True and row["neg_risk_source"] == "clob"
    assert row["first_seen_at"] == NOW  # not in ``update``: never overwritten


def test_state_commits_with_rows(store: Store) -> None:
    def batch(tx: object) -> None:
        from polytape.store import Tx

        assert isinstance(tx, Tx)
        tx.insert_ignore(s.trades, [trade(1)])
        tx.set_state("trades:v1:watermark", {"ts": 123}, NOW)

    store.write(batch)
    assert store.get_state("trades:v1:watermark") == {"ts": 123}

    def failing(tx: object) -> None:
        from polytape.store import Tx

        assert isinstance(tx, Tx)
        tx.insert_ignore(s.trades, [trade(2)])
        tx.set_state("trades:v1:watermark", {"ts": 999}, NOW)
        raise RuntimeError("crash mid-batch")

    with contextlib.suppress(RuntimeError):
        store.write(failing)
    assert store.get_state("trades:v1:watermark") == {"ts": 123}  # rolled back together
    assert store.count(s.trades) == 1


def test_job_runs_audit(store: Store) -> None:
    run_id = begin_job_run(store, "sync-large-trades", NOW)
    finish_job_run(
        store, run_id, finished_at=NOW + timedelta(seconds=2), status="partial", rows_written=3,
        error=None, details={"pages": 2, "gaps": [[1, 2]]},
    )  # fmt: skip
    stale = begin_job_run(store, "sync-open-interest", NOW)
    assert close_interrupted_runs(store, NOW, ttl=10) == 1
    runs = {r["job_name"]: r for r in latest_runs(store)}
    assert runs["sync-large-trades"]["status"] == "partial"
    assert runs["sync-large-trades"]["details"] == {"pages": 2, "gaps": [[1, 2]]}
    assert runs["sync-open-interest"]["id"] == stale
    assert runs["sync-open-interest"]["status"] == "error"


def test_rejected_payloads_keep_raw(store: Store) -> None:
    store.reject(
        [rejected_row("gamma:event", "missing id", {"title": "x"}, NOW), rejected_row("ws", "bad", b"{", NOW)]
    )
    rows = store.fetch_all(sa.select(s.rejected_payloads).order_by(s.rejected_payloads.c.id))
    assert [r["reason"] for r in rows] == ["missing id", "bad"]
    assert rows[0]["raw"] == '{"title": "x"}' and rows[1]["raw"] == "{"


def test_manual_tracking(store: Store) -> None:
    assert add_manual(store, ["0xa", "0xb", "0xa"], NOW) == 2
    assert [r["condition_id"] for r in list_tracked(store)] == ["0xa", "0xb"]
    assert remove_manual(store, ["0xa"]) == 1
    assert [r["source"] for r in list_tracked(store)] == ["manual"]


def test_driver_cursor_errors_are_sqlalchemys(store: Store) -> None:
    """The bulk paths' own cursors fail like every other statement: a refused statement is
    a SQLAlchemy error that ``write`` judges (here permanent: one line, no retry)."""
    attempts: list[int] = []

    def bad(tx: Tx) -> None:
        attempts.append(1)
        with tx.driver_cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(DatabaseRefused, match="no_such_table"):
        store.write(bad)
    assert attempts == [1]


@pytest.mark.postgres
def test_a_connection_lost_under_a_driver_cursor_is_retried(pg_url: str) -> None:
    """The server drops the session while a bulk statement runs: the connection is
    invalidated and the whole transaction runs again on a new one."""
    store = Store.open(pg_url, write_retry_seconds=30)
    pids: list[int] = []

    def write(tx: Tx) -> list[int]:
        pids.append(int(tx.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()))
        with tx.driver_cursor() as cursor:
            if len(pids) == 1:
                with psycopg.connect(PG_URL, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
            cursor.execute("SELECT * FROM unnest(%s::int[])", ([1, 2],))
            return [int(v) for (v,) in cursor.fetchall()]

    try:
        assert store.write(write) == [1, 2]
        assert len(pids) == 2 and pids[0] != pids[1]
    finally:
        store.close()
