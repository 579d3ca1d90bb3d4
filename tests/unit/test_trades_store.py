"""Trades store on SQLite and PostgreSQL: insert-ignore, watermark, gaps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from polytape.normalize.trades import TradeRecord, normalize_trade_v1, normalize_trades
from polytape.store import Store
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
