"""Current-book writes (store/books.py) on both engines: diffs, full replacements, exact
values, and a batch is a few statements on SQLite, never one per row."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime

import sqlalchemy as sa

from polytape.books import OrderBook
from polytape.normalize.books import BookMsg, Level
from polytape.store import Store
from polytape.store.books import BookWrite, write_books
from polytape.store.metadata import set_clob_neg_risk
from polytape.store.schema import markets, orderbook_levels, orderbooks

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _book(token: str, rng: random.Random, n: int) -> OrderBook:
    """A book of ``n`` levels a side with awkward sizes (many decimals, tiny, huge)."""
    bids = [
        Level(f"{(1 + k) / 10000:.4f}", repr(rng.choice([rng.random(), rng.uniform(1, 1e9)])))
        for k in range(n)
    ]
    asks = [Level(f"{(9999 - k) / 10000:.4f}", f"{rng.randint(1, 10**6) / 1000:.3f}") for k in range(n)]
    book = OrderBook(token, "0xc")
    book.apply_snapshot(BookMsg("0xc", token, "1790658661234", bids, asks, tick_size="0.0001"), NOW)
    return book


def _stored_levels(store: Store, token: str) -> dict[tuple[str, float], float]:
    rows = store.fetch_all(sa.select(orderbook_levels).where(orderbook_levels.c.token_id == token))
    return {(r["side"], r["price"]): r["size"] for r in rows}


def _expected(book: OrderBook) -> dict[tuple[str, float], float]:
    return {(side, price): size for side, price, size in book.levels()}


def _flush(store: Store, *books: OrderBook) -> int:
    batch = BookWrite()
    for book in books:
        batch.add(book, NOW)
    return store.write(lambda tx: write_books(tx, batch, NOW))


def test_diffs_and_replacements_store_exactly_the_book(store: Store) -> None:
    rng = random.Random(7)
    a, b = _book("1", rng, 600), _book("2", rng, 3)
    assert _flush(store, a, b) == 1206
    assert _stored_levels(store, "1") == _expected(a)
    # a diff: changed, new and removed levels on both sides
    for k in range(0, 600, 3):
        a.apply_change("BUY", f"{(1 + k) / 10000:.4f}", "0")
        a.apply_change("SELL", f"{(9999 - k) / 10000:.4f}", repr(rng.uniform(0, 1e6)))
    a.apply_change("BUY", "0.5001", "12.5")
    written = _flush(store, a)
    assert written == 401
    assert _stored_levels(store, "1") == _expected(a)
    assert _stored_levels(store, "2") == _expected(b)  # not in this flush: untouched
    # a full replacement (a snapshot with fewer levels) removes what it lacks
    a.force_full_write()
    a.apply_snapshot(BookMsg("0xc", "1", "1790658662000", [Level("0.3", "1")], [], tick_size="0.001"), NOW)
    _flush(store, a)
    assert _stored_levels(store, "1") == {("BUY", 0.3): 1.0}
    header = store.fetch_all(sa.select(orderbooks).where(orderbooks.c.token_id == "1"))[0]
    assert (header["best_bid"], header["best_ask"], header["tick_size"]) == (0.3, None, 0.001)


def test_header_keeps_rest_only_fields_a_ws_book_lacks(store: Store) -> None:
    book = _book("9", random.Random(1), 2)
    book.min_order_size, book.neg_risk = "5", True
    _flush(store, book)
    ws = _book("9", random.Random(2), 2)  # knows neither min_order_size nor neg_risk
    ws.tick_size = None
    _flush(store, ws)
    header = store.fetch_all(sa.select(orderbooks).where(orderbooks.c.token_id == "9"))[0]
    assert (header["min_order_size"], header["neg_risk"], header["tick_size"]) == (5.0, True, 0.0001)


def test_clob_neg_risk_updates_known_markets_only(store: Store) -> None:
    store.insert_ignore(
        markets,
        [
            {"condition_id": f"0x{i}", "neg_risk": False, "first_seen_at": NOW, "updated_at": NOW}
            for i in range(3)
        ],
    )
    assert store.write(lambda tx: set_clob_neg_risk(tx, {"0x0": True, "0x2": False, "0xmissing": True})) == 2
    rows = {r["condition_id"]: r for r in store.fetch_all(sa.select(markets))}
    assert [(rows[c]["neg_risk"], rows[c]["neg_risk_source"]) for c in ("0x0", "0x1", "0x2")] == [
        (True, "clob"),
        (False, rows["0x1"]["neg_risk_source"]),
        (False, "clob"),
    ]


def test_sqlite_flush_is_a_few_statements_not_one_per_row(sqlite_url: str) -> None:
    """executemany would step once per row, each step a GIL hand-off (5 ms beside a busy loop)."""
    store = Store.open(sqlite_url)
    try:
        books = [_book(str(i), random.Random(i), 40) for i in range(50)]
        _flush(store, *books)
        for i, book in enumerate(books):
            book.apply_change("BUY", "0.0001", "0")
            book.apply_change("SELL", "0.9000", str(i + 1))
        statements: list[str] = []

        def traced(tx: object) -> int:
            raw = tx.conn.connection.driver_connection  # type: ignore[attr-defined]
            assert isinstance(raw, sqlite3.Connection)
            raw.set_trace_callback(statements.append)
            try:
                return write_books(tx, batch, NOW)  # type: ignore[arg-type]
            finally:
                raw.set_trace_callback(None)

        batch = BookWrite()
        for book in books:
            batch.add(book, NOW)
        assert store.write(traced) == 100
        writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "DELETE", "UPDATE"))]
        assert 0 < len(writes) <= 12, writes[:6]  # power-of-two row counts: 50 = 32 + 16 + 2
        assert all(_stored_levels(store, b.token_id) == _expected(b) for b in books)
    finally:
        store.close()


def test_sqlite_batches_use_a_bounded_set_of_statement_shapes(sqlite_url: str) -> None:
    """The driver caches every distinct statement it prepared (~2 MB for a 2,000-row one):
    batch tails of arbitrary length must not each make a new one."""
    from polytape.store.bulk import ROWS, run_rows

    store = Store.open(sqlite_url)
    shapes: set[str] = set()
    rng = random.Random(3)

    def write(tx: object) -> int:
        raw = tx.conn.connection.driver_connection  # type: ignore[attr-defined]
        raw.set_trace_callback(lambda sql: shapes.add(f"{sql[:11]} {sql.count('), (') + 1} rows"))
        try:
            total = 0
            for _ in range(40):
                n = rng.randint(1, 5000)
                rows = [(f"t{k}", "BUY", k / 10_000, 1.0, "2026-01-01 00:00:00") for k in range(n)]
                sql = (
                    "INSERT OR REPLACE INTO orderbook_levels (token_id, side, price, size, updated_at) "
                    "VALUES " + ROWS
                )
                total += run_rows(tx, sqlite_sql=sql, pg_sql="", rows=rows)  # type: ignore[arg-type]
            return total
        finally:
            raw.set_trace_callback(None)

    try:
        assert store.write(write) > 0
        inserts = {shape for shape in shapes if shape.startswith("INSERT")}
        assert 3 <= len(inserts) <= 11, sorted(inserts)  # 1, 2, 4, ..., 1024 rows
    finally:
        store.close()


def test_levels_without_rowid_migration_keeps_every_level(db_url: str) -> None:
    """0007 rebuilds ``orderbook_levels`` on SQLite as a ``WITHOUT ROWID`` table (PostgreSQL
    is unchanged): every stored level survives, writes and deletes still work, and the
    downgrade brings the rowid table back with the same rows."""
    from alembic import command

    from polytape.store import engine as engine_mod

    def table_sql(store: Store) -> str:
        with store.engine.connect() as conn:
            return str(
                conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'orderbook_levels'"
                ).scalar_one()
            )

    rng = random.Random(3)
    books = [_book(str(i), rng, 25) for i in range(40)]
    store = Store.open(db_url, migrate=False)
    try:
        engine_mod.upgrade(store.engine, "0006")
        sqlite = store.engine.dialect.name == "sqlite"
        if sqlite:
            assert "WITHOUT ROWID" not in table_sql(store).upper()
        _flush(store, *books)
        before = {b.token_id: _stored_levels(store, b.token_id) for b in books}
        store.migrate()
        if sqlite:
            assert "WITHOUT ROWID" in table_sql(store).upper()
        assert {b.token_id: _stored_levels(store, b.token_id) for b in books} == before
        for k in range(0, 25, 2):  # deletes and changes after the rebuild
            books[0].apply_change("BUY", f"{(1 + k) / 10000:.4f}", "0")
            books[0].apply_change("SELL", f"{(9999 - k) / 10000:.4f}", "7.5")
        _flush(store, books[0])
        assert _stored_levels(store, books[0].token_id) == _expected(books[0])
        with store.engine.begin() as conn:
            cfg = engine_mod.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")
        if sqlite:
            assert "WITHOUT ROWID" not in table_sql(store).upper()
        assert _stored_levels(store, books[0].token_id) == _expected(books[0])
        assert _stored_levels(store, books[1].token_id) == before[books[1].token_id]
    finally:
        store.close()
