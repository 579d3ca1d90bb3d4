"""Many rows per statement on the hot paths, on both engines.

On SQLite a batch of rows goes in as a few multi-row ``VALUES`` statements (up to 1,024
rows, within the bound-parameter limit), so a batch is a handful of ``sqlite3_step``
calls. ``executemany`` steps once per row and the driver releases the
GIL around every step; the writer runs in a thread beside an event loop that keeps the
GIL busy (the book feed at venue scale), and each reacquisition waits for the
interpreter's switch interval (5 ms). Measured here: 13,000 level upserts took 0.03 s
with the loop idle and 11.2 s with it busy. Multi-row ``VALUES`` also beat both
``executemany`` and rows read from one JSON parameter (``json_each``) with the loop idle:
13,000 header upserts in 0.04-0.05 s against 0.06-0.09 s and 0.15-0.20 s.

On PostgreSQL a batch is one statement too: each column goes as one array parameter,
read back with ``unnest``. ``executemany`` (a pipeline of one statement per row) kept the
server at 13,000 upserts a second behind the feed: current books lagged 55 s (p50).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from polytape.store.core import Tx

ROWS = "{rows}"  # where a SQLite statement takes its ``(?, …), (?, …)`` list
MAX_ROWS_PER_STATEMENT = 1024
_FALLBACK_LIMIT = 999  # SQLite's bound-parameter limit before 3.32


def _param_limit(raw: Any) -> int:
    try:
        return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):
        return _FALLBACK_LIMIT


def sqlite_batches(tx: Tx, sql: str, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any]]]:
    """``sql`` with :data:`ROWS` filled in for each batch of ``rows`` (tuples of one width),
    and that batch's values in one flat list.

    Batches hold a power-of-two number of rows (up to 1,024, within the bound-parameter
    limit): the driver caches each distinct statement it prepared (about 2 MB for 2,000 rows
    of 14 columns), and a tail of any length made a new one per flush, growing the cache by
    hundreds of MB.
    """
    if not rows:
        return
    width = len(rows[0])
    cap = max(1, min(MAX_ROWS_PER_STATEMENT, _param_limit(tx.conn.connection.driver_connection) // width))
    per = 1 << (cap.bit_length() - 1)
    one = "(" + ", ".join(["?"] * width) + ")"
    start, n = 0, len(rows)
    while start < n:
        size = per if n - start >= per else 1 << ((n - start).bit_length() - 1)
        yield (
            sql.replace(ROWS, ", ".join([one] * size)),
            [v for row in rows[start : start + size] for v in row],
        )
        start += size


def sqlite_rows(tx: Tx, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run a SQLite statement holding :data:`ROWS` over ``rows``; the rows it changed."""
    with tx.driver_cursor() as cursor:
        changed = 0
        for statement, values in sqlite_batches(tx, sql, rows):
            cursor.execute(statement, values)
            changed += max(0, int(cursor.rowcount))
        return changed


def run_rows(tx: Tx, *, sqlite_sql: str, pg_sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run a statement over ``rows`` (tuples of one width); return the rows it changed.

    ``sqlite_sql`` holds :data:`ROWS` where the row list goes (``INSERT … VALUES {rows}``,
    ``FROM (VALUES {rows}) AS v`` with columns ``column1``…); ``pg_sql`` takes one array
    per column, in row order (``… FROM unnest(%s::text[], %s::float8[]) AS v(a, b)``).
    Values must already be bound as the column types store them.
    """
    if not rows:
        return 0
    if tx.dialect != "postgresql":
        return sqlite_rows(tx, sqlite_sql, rows)
    with tx.driver_cursor() as cursor:
        cursor.execute(pg_sql, [list(column) for column in zip(*rows, strict=True)])
        return max(0, int(cursor.rowcount))
