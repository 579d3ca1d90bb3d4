"""Trades: batched insert-ignore by ``dedupe_key``, the large-trades watermark and gaps.

The watermark and the gap list live in ``sync_state`` and are written in the same
transaction as the rows they cover (lessons.md #5): on the newest-first feed the
watermark moves only when the whole window down to the safety margin is stored, or the
part that could not be fetched is recorded as a gap for the backfill.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from polytape.normalize.trades import TradesPage
from polytape.store.core import Store, Tx
from polytape.store.runs import rejected_row
from polytape.store.schema import UTCDateTime, trades

WATERMARK_KEY = "trades:large:watermark"
"""``{"ts": epoch seconds}``: newest trade time below which (minus the safety window) the
large-trades window is stored or recorded as a gap."""
GAPS_KEY = "trades:gaps"
"""``[[start, end], ...]`` epoch seconds, inclusive: windows the job could not cover."""
MAX_GAPS = 500  # a gap list past this is merged into its neighbours' span (still complete)

Interval = tuple[int, int]


def insert_trades(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert trades whose ``dedupe_key`` is new, in batches; return how many were new.

    Per batch of ``tx.batch_size``: one indexed look-up drops the keys already stored (the
    rolling window re-reads mostly known trades), then the rest go in with one bulk
    statement that still ignores conflicts (another writer may have raced us): SQLite
    ``INSERT OR IGNORE`` via one executemany, PostgreSQL a binary
    ``COPY`` into a session temp table and ``INSERT … SELECT … ON CONFLICT DO NOTHING``.
    """
    unique = list({row["dedupe_key"]: row for row in rows}.values())
    inserted = 0
    for start in range(0, len(unique), tx.batch_size):
        batch = unique[start : start + tx.batch_size]
        known = _stored_keys(tx, [row["dedupe_key"] for row in batch])
        fresh = [row for row in batch if row["dedupe_key"] not in known]
        if not fresh:
            continue
        if tx.dialect == "postgresql":
            inserted += _pg_copy_insert(tx, fresh)
        else:
            inserted += _sqlite_insert(tx, fresh)
    return inserted


_COLUMNS = [c.name for c in trades.columns if c.name != "id"]
_ROW_VALUES = operator.itemgetter(*_COLUMNS)
_TIME_COLUMNS = [i for i, name in enumerate(_COLUMNS) if isinstance(trades.c[name].type, UTCDateTime)]
_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_SQLITE_INSERT = (
    f"INSERT OR IGNORE INTO trades ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


def _values(row: Mapping[str, Any]) -> list[Any]:
    """A row's values in ``_COLUMNS`` order (a missing optional column is NULL)."""
    try:
        return list(_ROW_VALUES(row))
    except KeyError:
        return [row.get(name) for name in _COLUMNS]


def _sqlite_insert(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """SQLite bulk path: one executemany of INSERT OR IGNORE on plain tuples.

    Times are converted by the column type's own bind processor (so they are stored
    exactly as every other write stores them), once per distinct value; the other
    columns are str/int/float already.
    """
    dialect = tx.conn.dialect
    procs = [
        (i, trades.c[_COLUMNS[i]].type.dialect_impl(dialect).bind_processor(dialect)) for i in _TIME_COLUMNS
    ]
    bound: dict[Any, Any] = {}  # times repeat (one ingested_at per batch, same-second trades)
    params = []
    for row in rows:
        values = _values(row)
        for i, proc in procs:
            value = values[i]
            if value is not None and proc is not None:
                done = bound.get(value)
                if done is None:
                    done = bound[value] = proc(value)
                values[i] = done
        params.append(values)
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(_SQLITE_INSERT, params)
        return max(0, int(cursor.rowcount))
    finally:
        cursor.close()


_KEYS = sa.bindparam("keys", type_=postgresql.ARRAY(sa.String))
_STORED_PG = sa.select(trades.c.dedupe_key).where(trades.c.dedupe_key == sa.any_(_KEYS))


def _stored_keys(tx: Tx, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are stored (PostgreSQL: one array parameter, one cached plan)."""
    if tx.dialect == "postgresql":
        return {str(k) for k in tx.execute(_STORED_PG, {"keys": list(keys)}).scalars()}
    sql = f"SELECT dedupe_key FROM trades WHERE dedupe_key IN ({', '.join('?' * len(keys))})"
    return {str(k) for (k,) in tx.conn.exec_driver_sql(sql, tuple(keys))}


_STAGE = "_polytape_trades_in"
_PG_TYPES = [
    {
        "VARCHAR": "text",
        "INTEGER": "int4",
        "DOUBLE PRECISION": "float8",
        "TIMESTAMP WITH TIME ZONE": "timestamptz",
    }[trades.c[name].type.compile(dialect=_PG_DIALECT).split("(")[0]]
    for name in _COLUMNS
]
_NAMES = ", ".join(_COLUMNS)


def _pg_copy_insert(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """PostgreSQL bulk path: binary COPY into a session temp table, then one insert-ignore.

    The temp table (emptied at commit) is created when the session lacks it, and emptied
    in the same round trip, since one transaction may hold several batches.
    """
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS "
            f"AS SELECT {_NAMES} FROM trades WITH NO DATA; DELETE FROM {_STAGE}"
        )
        with cursor.copy(f"COPY {_STAGE} ({_NAMES}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_PG_TYPES)
            for row in rows:
                copy.write_row(_values(row))
        cursor.execute(f"INSERT INTO trades ({_NAMES}) SELECT {_NAMES} FROM {_STAGE} ON CONFLICT DO NOTHING")
        return max(0, int(cursor.rowcount))
    finally:
        cursor.close()


def last_trade_ts_seen(
    source: Store | Tx | sa.Connection, trade_source: str | None = None
) -> datetime | None:
    """Newest ``trade_ts`` stored (of one ``source`` value, when given), or None."""
    stmt = sa.select(sa.func.max(trades.c.trade_ts))
    if trade_source is not None:
        stmt = stmt.where(trades.c.source == trade_source)

    def read(conn: sa.Connection) -> datetime | None:
        value = conn.execute(stmt).scalar()
        if isinstance(value, str):  # SQLite hands back text for an aggregate
            value = datetime.fromisoformat(value)
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    if isinstance(source, Store):
        return source.read(read)
    if isinstance(source, Tx):
        return read(source.conn)
    return read(source)


def store_trades_page(tx: Tx, page: TradesPage, now: datetime) -> int:
    """A normalized page: its new trades and its rejected items, in the caller's transaction."""
    tx.reject([rejected_row(r.source, r.reason, r.raw, now) for r in page.rejected])
    return insert_trades(tx, page.rows)


# ---- watermark --------------------------------------------------------------------------


def get_watermark(tx: Tx) -> int | None:
    """The large-trades watermark (epoch seconds), or None before the first complete run."""
    value = tx.get_state(WATERMARK_KEY)
    if isinstance(value, dict) and isinstance(value.get("ts"), int):
        return int(value["ts"])
    return None


def load_watermark(store: Store) -> int | None:
    """:func:`get_watermark` in its own read."""
    value = store.get_state(WATERMARK_KEY)
    if isinstance(value, dict) and isinstance(value.get("ts"), int):
        return int(value["ts"])
    return None


def set_watermark(tx: Tx, ts: int, now: datetime) -> None:
    """Move the watermark (only ever forward)."""
    current = get_watermark(tx)
    if current is None or ts > current:
        tx.set_state(WATERMARK_KEY, {"ts": int(ts)}, now)


# ---- gaps -------------------------------------------------------------------------------


def merge_intervals(intervals: Iterable[Sequence[int]]) -> list[Interval]:
    """Sorted, merged inclusive integer intervals (touching ones join)."""
    merged: list[list[int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in intervals if int(a) <= int(b)):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    while len(merged) > MAX_GAPS:  # join the two closest neighbours
        i = min(range(len(merged) - 1), key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i : i + 2] = [[merged[i][0], merged[i + 1][1]]]
    return [(lo, hi) for lo, hi in merged]


def subtract_interval(intervals: Iterable[Sequence[int]], start: int, end: int) -> list[Interval]:
    """``intervals`` minus the inclusive ``[start, end]``."""
    out: list[Interval] = []
    for lo, hi in merge_intervals(intervals):
        if hi < start or lo > end:
            out.append((lo, hi))
            continue
        if lo < start:
            out.append((lo, start - 1))
        if hi > end:
            out.append((end + 1, hi))
    return out


def get_gaps(tx: Tx) -> list[Interval]:
    """Windows of the large-trades feed that are not covered yet."""
    value = tx.get_state(GAPS_KEY)
    if not isinstance(value, list):
        return []
    return merge_intervals(v for v in value if isinstance(v, list | tuple) and len(v) == 2)


def add_gaps(tx: Tx, gaps: Iterable[Sequence[int]], now: datetime) -> list[Interval]:
    """Record uncovered windows (merged with the known ones); returns the new list."""
    new = list(gaps)
    if not new:
        return get_gaps(tx)
    merged = merge_intervals([*get_gaps(tx), *new])
    tx.set_state(GAPS_KEY, [list(g) for g in merged], now)
    return merged


def clear_gaps(tx: Tx, start: int, end: int, now: datetime) -> list[Interval]:
    """Drop the part of every gap inside ``[start, end]`` (a backfill covered it)."""
    before = get_gaps(tx)
    after = subtract_interval(before, start, end)
    if after != before:
        tx.set_state(GAPS_KEY, [list(g) for g in after], now)
    return after
