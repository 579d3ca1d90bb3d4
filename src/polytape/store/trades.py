"""Trades: batched insert-ignore by ``dedupe_key``, the large-trades watermark and gaps.

The watermark and the gap list live in ``sync_state`` and are written in the same
transaction as the rows they cover (lessons.md #5): on the newest-first feed the
watermark moves only when the whole window down to the safety margin is stored, or the
part that could not be fetched is recorded as a gap for the backfill.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from polytape.normalize.trades import TradesPage
from polytape.store.bulk import ROWS, sqlite_batches, sqlite_rows
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

    Per batch of ``tx.batch_size``: one indexed look-up by ``(trade_ts, dedupe_key)`` of
    the trades timed within the stored trades' span (:func:`_inside_span`) drops those
    already stored (the rolling window re-reads mostly known trades), then the rest go in
    with bulk statements: SQLite ``INSERT OR IGNORE`` in a few multi-row statements,
    PostgreSQL a binary ``COPY`` under a transaction-level lock that other trade writers
    wait for (:func:`_pg_insert`). The count is the rows the database actually inserted.
    """
    unique = list({row["dedupe_key"]: row for row in rows}.values())
    inserted = 0
    for start in range(0, len(unique), tx.batch_size):
        batch = unique[start : start + tx.batch_size]
        if tx.dialect == "postgresql":
            inserted += _pg_insert(tx, batch)
        else:
            inserted += _sqlite_insert(tx, batch)
    return inserted


_COLUMNS = [c.name for c in trades.columns if c.name != "id"]
_ROW_VALUES = operator.itemgetter(*_COLUMNS)
_TIME_COLUMNS = [i for i, name in enumerate(_COLUMNS) if isinstance(trades.c[name].type, UTCDateTime)]
_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_SQLITE_INSERT = f"INSERT OR IGNORE INTO trades ({', '.join(_COLUMNS)}) VALUES {ROWS}"


def _values(row: Mapping[str, Any]) -> list[Any]:
    """A row's values in ``_COLUMNS`` order (a missing optional column is NULL)."""
    try:
        return list(_ROW_VALUES(row))
    except KeyError:
        return [row.get(name) for name in _COLUMNS]


def _sqlite_insert(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """SQLite bulk path: the look-up, then INSERT OR IGNORE of the new rows, a few multi-row
    statements (store/bulk.py: an executemany steps, and hands the GIL over, once per row).

    Times become the text every other write stores (:func:`_sqlite_time_text`; the
    look-up compares that text), once per distinct value; the other columns are
    str/int/float already. Only the new rows are built in full.
    """
    to_text = _sqlite_time_text(tx.conn.dialect)
    bound: dict[datetime, Any] = {}  # times repeat (one ingested_at per batch, same-second trades)

    def bind(value: datetime | None) -> Any:
        if value is None:
            return None
        done = bound.get(value)
        if done is None:
            done = bound[value] = to_text(value)
        return done

    known: set[str] = set()
    pairs = [(bind(row["trade_ts"]), row["dedupe_key"]) for row in rows]
    with tx.driver_cursor() as cursor:
        inside = [pairs[i] for i in _inside_span(tx, cursor, [t for t, _ in pairs])]
        for statement, values in sqlite_batches(tx, _SQLITE_LOOKUP, inside):
            cursor.execute(statement, values)
            known.update(str(k) for (k,) in cursor.fetchall())
    params = []
    for row in rows:
        if known and row["dedupe_key"] in known:
            continue
        values = _values(row)
        for i in _TIME_COLUMNS:
            values[i] = bind(values[i])
        params.append(values)
    return sqlite_rows(tx, _SQLITE_INSERT, params)


@functools.lru_cache(maxsize=4)
def _sqlite_time_text(dialect: sa.Dialect) -> Callable[[datetime], Any]:
    """The stored text of an aware time: the column type's bind processor, or the same text
    made about four times faster (checked against the processor on sample times first).
    """
    proc = trades.c.trade_ts.type.dialect_impl(dialect).bind_processor(dialect)
    if proc is None:
        return lambda value: value

    def fast(value: datetime) -> Any:
        if value.tzinfo is None:
            return proc(value)  # the type's own error for a naive time
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    samples = [
        datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=timezone(timedelta(hours=-5))),
    ]
    return fast if all(fast(t) == proc(t) for t in samples) else proc


# Which (trade_ts, dedupe_key) pairs are stored: one probe of the unique index each
# (``(a, b) IN (VALUES …)`` directly would scan the index; through a subquery SQLite searches it).
_SQLITE_LOOKUP = (
    "SELECT dedupe_key FROM trades WHERE (trade_ts, dedupe_key) IN "
    f"(SELECT column1, column2 FROM (VALUES {ROWS}))"
)


_STORED_PG = (  # binary parameters: psycopg quotes text arrays element by element with regexes
    "SELECT dedupe_key FROM trades WHERE (trade_ts, dedupe_key) IN "
    "(SELECT * FROM unnest(%b::timestamptz[], %b::text[]))"
)
_PG_TYPES = [
    {
        "VARCHAR": "text",
        "INTEGER": "int4",
        "DOUBLE PRECISION": "float8",
        "TIMESTAMP WITH TIME ZONE": "timestamptz",
    }[trades.c[name].type.compile(dialect=_PG_DIALECT).split("(")[0]]
    for name in _COLUMNS
]
_COPY_PG = f"COPY trades ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def _pg_insert(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """PostgreSQL bulk path: the trades lock, the look-up, a binary ``COPY`` of the new rows.

    ``COPY`` cannot skip a conflict, and needs none: the transaction holds the trades lock
    from before its first look-up until its commit, so no other polytape writer can store
    one of these keys between the look-up and the copy (in READ COMMITTED each statement
    sees every commit before it; rows this transaction stored earlier it sees too). That is
    about a third less server time than staging the rows and inserting them with ``ON
    CONFLICT DO NOTHING`` (a speculative insertion per row). A writer that bypasses
    polytape and races it makes the copy fail with a unique violation; :meth:`Store.write`
    then runs the transaction once more, and its look-up finds that writer's rows.
    """
    tx.lock("trades")  # trade writers of this database and schema take turns
    with tx.driver_cursor() as cursor:
        inside = [rows[i] for i in _inside_span(tx, cursor, [row["trade_ts"] for row in rows])]
        fresh = rows
        if inside:
            stamps = [row["trade_ts"] for row in inside]
            keys = [row["dedupe_key"] for row in inside]
            known = {str(k) for (k,) in cursor.execute(_STORED_PG, (stamps, keys), prepare=True)}
            fresh = [row for row in rows if row["dedupe_key"] not in known] if known else rows
        if fresh:
            with cursor.copy(_COPY_PG) as copy:
                copy.set_types(_PG_TYPES)
                for row in fresh:
                    copy.write_row(_values(row))
        return len(fresh)


_SPAN = "trades:span"
_SPAN_SQL = "SELECT (SELECT min(trade_ts) FROM trades), (SELECT max(trade_ts) FROM trades)"


def _inside_span(tx: Tx, cursor: Any, times: Sequence[Any]) -> list[int]:
    """Which of ``times`` (by index) lie within the stored trades' first and last time;
    then the span takes them in, as the batch is about to be stored.

    Only trades timed within it can be stored already (the key includes the time), so
    only those are looked up: none for a backfill walking back in time or a fresh
    database, the few at a page's boundary second when pages come newest first.

    The span is read once per transaction (on PostgreSQL under the trades lock, so no
    other polytape writer adds to it before the commit) and kept in ``tx.memo``; each end
    is one index probe, in its own subquery (SQLite optimizes a lone ``min``/``max``
    only). Times compare as the engine stores them: aware datetimes on PostgreSQL, text on
    SQLite.
    """
    span = tx.memo.get(_SPAN)
    if span is None:
        cursor.execute(_SPAN_SQL)
        span = tuple(cursor.fetchone())
    first, last = span
    lo, hi = min(times), max(times)
    if first is None:
        tx.memo[_SPAN] = (lo, hi)
        return []
    tx.memo[_SPAN] = (min(first, lo), max(last, hi))
    return [i for i, t in enumerate(times) if first <= t <= last]


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
