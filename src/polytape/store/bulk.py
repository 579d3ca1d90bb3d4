"""Many rows per statement on the hot paths, on both engines.

On SQLite a batch of rows goes in as a few multi-row ``VALUES`` statements (as many
rows as the bound-parameter limit allows), so a batch is a handful of
``sqlite3_step`` calls. ``executemany`` steps once per row and the driver releases the
GIL around every step; the writer runs in a thread beside an event loop that keeps the
GIL busy (the book feed at venue scale), and each reacquisition waits for the
interpreter's switch interval (5 ms). Measured here: 13,000 level upserts took 0.03 s
with the loop idle and 11.2 s with it busy. Multi-row ``VALUES`` also beat both
``executemany`` and rows read from one JSON parameter (``json_each``) with the loop idle:
13,000 header upserts in 0.04-0.05 s against 0.06-0.09 s and 0.15-0.20 s.

PostgreSQL keeps ``executemany``, which psycopg sends as one pipeline.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from polytape.store.core import Tx

ROWS = "{rows}"  # where a SQLite statement takes its ``(?, …), (?, …)`` list
_FALLBACK_LIMIT = 999  # SQLite's bound-parameter limit before 3.32


def _param_limit(raw: Any) -> int:
    try:
        return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):
        return _FALLBACK_LIMIT


def run_rows(tx: Tx, *, sqlite_sql: str, pg_sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run a statement over ``rows`` (tuples of one width); return the rows it changed.

    ``sqlite_sql`` holds :data:`ROWS` where the row list goes (``INSERT … VALUES {rows}``,
    ``… IN (VALUES {rows})``, ``FROM (VALUES {rows}) AS v`` with columns ``column1``…);
    ``pg_sql`` takes one row's values per execution. Values must already be bound as the
    column types store them.
    """
    if not rows:
        return 0
    raw = tx.conn.connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        if tx.dialect == "postgresql":
            cursor.executemany(pg_sql, rows)
            return max(0, int(cursor.rowcount))
        width = len(rows[0])
        per = max(1, _param_limit(raw) // width)
        one = "(" + ", ".join(["?"] * width) + ")"
        full_sql = sqlite_sql.replace(ROWS, ", ".join([one] * per)) if len(rows) >= per else ""
        changed = 0
        for start in range(0, len(rows), per):
            batch = rows[start : start + per]
            sql = full_sql if len(batch) == per else sqlite_sql.replace(ROWS, ", ".join([one] * len(batch)))
            cursor.execute(sql, [value for row in batch for value in row])
            changed += max(0, int(cursor.rowcount))
        return changed
    finally:
        cursor.close()
