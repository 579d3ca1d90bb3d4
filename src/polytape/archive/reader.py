"""Reading the archive: tables for a time range and tokens, the ledger, a book at any moment.

Everything returns ``pyarrow.Table`` (pandas and polars users convert from Arrow).
Times are µs since the epoch; ranges are ``[since, until)`` on the server time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from polytape.archive.schema import (
    GAPS,
    L2,
    SCHEMAS,
    STATE_DIR,
    TIME_COLUMN,
    TRADES,
    dedupe_trades,
    hour_of,
    live_files,
    partitions,
)

Level = tuple[float, float]


@dataclass
class BookAt:
    """The book of one token as it stood at ``at`` (µs), rebuilt from the archive."""

    token_id: str
    at: int
    found: bool = False
    timestamp: int | None = None  # server time of the newest row applied
    hash: str = ""
    verified: bool = False
    in_gap: bool = False
    gap_reason: str = ""
    bids: list[Level] = field(default_factory=list)  # best (highest) first
    asks: list[Level] = field(default_factory=list)  # best (lowest) first

    def as_json(self) -> dict[str, Any]:
        """The ``replay book --json`` object."""
        return {
            "token_id": self.token_id,
            "timestamp": self.timestamp,
            "hash": self.hash,
            "verified": self.verified,
            "in_gap": self.in_gap,
            "bids": [[p, s] for p, s in self.bids],
            "asks": [[p, s] for p, s in self.asks],
        }


def files_for(root: Path, data_type: str, since: int | None, until: int | None) -> list[Path]:
    """Live Parquet files of the hours that can hold rows of ``[since, until)``."""
    lo = None if since is None or data_type == GAPS else hour_of(since)
    hi = None if until is None else hour_of(until)
    out: list[Path] = []
    for hour, folder in partitions(root, data_type):
        if (lo is None or hour >= lo) and (hi is None or hour <= hi):
            out.extend(live_files(folder))
    return out


def read_table(
    root: Path,
    data_type: str,
    since: int | None = None,
    until: int | None = None,
    tokens: Sequence[str] | None = None,
    markets: Sequence[str] | None = None,
    *,
    files: list[Path] | None = None,
) -> Any:
    """Rows of a stored data type in ``[since, until)`` (gaps: those overlapping it), by seq."""
    schema = SCHEMAS[data_type]
    paths = files_for(root, data_type, since, until) if files is None else files
    if not paths:
        return schema.empty_table()
    expr = None
    if data_type == GAPS:
        if since is not None:
            expr = _and(expr, ds.field("end") >= since)
        if until is not None:
            expr = _and(expr, ds.field("start") < until)
    else:
        col = TIME_COLUMN[data_type]
        if since is not None:
            expr = _and(expr, ds.field(col) >= since)
        if until is not None:
            expr = _and(expr, ds.field(col) < until)
        if markets:
            expr = _and(expr, ds.field("condition_id").isin(list(markets)))
    if tokens:
        expr = _and(expr, ds.field("token_id").isin(list(tokens)))
    table = ds.dataset([str(p) for p in paths], schema=schema, format="parquet").to_table(filter=expr)
    if data_type == TRADES:
        table = dedupe_trades(table)
    return (
        table.sort_by("seq")
        if data_type == L2
        else table.sort_by([(TIME_COLUMN[data_type], "ascending"), ("seq", "ascending")])
    )


def _and(expr: Any, more: Any) -> Any:
    return more if expr is None else expr & more


def open_gaps(root: Path) -> list[dict[str, Any]]:
    """Gaps not yet healed, from every writer's state file (``end`` and ``healed_by`` None)."""
    out: list[dict[str, Any]] = []
    folder = root / STATE_DIR
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for token_id, (start, reason) in state.get("open_gaps", {}).items():
            out.append(
                {"token_id": token_id, "start": int(start), "end": None, "reason": reason, "healed_by": None}
            )
    return out


def writer_states(root: Path) -> list[dict[str, Any]]:
    """Every writer's state file (``written_at`` is its newest flush)."""
    folder = root / STATE_DIR
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append({"name": path.stem, **json.loads(path.read_text())})
        except (OSError, ValueError):
            continue
    return out


def condition_of(root: Path, token_id: str) -> list[str] | None:
    """The token's condition id as the writers know it (lets a read skip other markets' row groups)."""
    for state in writer_states(root):
        cid = state.get("conditions", {}).get(token_id)
        if cid:
            return [str(cid)]
    return None


def gaps_at(root: Path, token_id: str, at: int) -> list[dict[str, Any]]:
    """Gaps of a token (closed or open) that contain the moment ``at``."""
    table = read_table(root, GAPS, tokens=[token_id])
    hits = [g for g in table.to_pylist() if g["start"] <= at < g["end"]]
    hits += [g for g in open_gaps(root) if g["token_id"] == token_id and g["start"] <= at]
    return hits


def book_at(root: Path, token_id: str, at: int, *, check_gaps: bool = True) -> BookAt:
    """Rebuild a token's book at ``at`` (µs, server time; ties by arrival order).

    Seeks from the newest snapshot (heal or checkpoint) at or before ``at``: hours are
    read newest first, one token's rows each, until one holds a snapshot.
    """
    result = BookAt(token_id, at)
    market = condition_of(root, token_id)
    hours = [(h, f) for h, f in partitions(root, L2) if h <= hour_of(at)]
    tables: list[Any] = []
    for _, folder in reversed(hours):
        files = live_files(folder)
        if not files:
            continue
        table = read_table(root, L2, until=at + 1, tokens=[token_id], markets=market, files=files)
        if table.num_rows:
            tables.append(table)
            if pc.any(table.column("is_snapshot")).as_py():
                break
    if tables:
        rows = pa.concat_tables(list(reversed(tables))).sort_by("seq")
        _replay(result, rows)
    if check_gaps:
        hits = gaps_at(root, token_id, at)
        if hits:
            result.in_gap, result.gap_reason = True, str(hits[0]["reason"])
    return result


def _replay(result: BookAt, rows: Any) -> None:
    snap = rows.column("is_snapshot").to_pylist()
    seq = rows.column("seq").to_pylist()
    local = rows.column("local_timestamp").to_pylist()
    start = 0
    for i in range(len(snap) - 1, -1, -1):
        if snap[i]:
            start = i
            while (
                start > 0
                and snap[start - 1]
                and seq[start - 1] == seq[start] - 1
                and local[start - 1] == local[i]
            ):
                start -= 1
            break
    else:
        return  # no snapshot at all: the book is unknown
    side = rows.column("side").to_pylist()[start:]
    price = rows.column("price").to_pylist()[start:]
    amount = rows.column("amount").to_pylist()[start:]
    stamps = rows.column("timestamp").to_pylist()[start:]
    snap_ts = stamps[0]
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for s, p, a, ts in zip(side, price, amount, stamps, strict=True):
        if ts < snap_ts:
            continue  # heard after the snapshot but older than it: the snapshot covers it
        levels = bids if s == "bid" else asks
        if a > 0.0:
            levels[p] = a
        else:
            levels.pop(p, None)
    last = len(snap) - 1
    result.found = True
    result.timestamp = rows.column("timestamp")[last].as_py()
    result.hash = rows.column("hash")[last].as_py() or ""
    result.verified = bool(rows.column("verified")[last].as_py())
    result.bids = sorted(bids.items(), reverse=True)
    result.asks = sorted(asks.items())


class Archive:
    """The read API for notebooks: ``polytape.archive.open(dir)``.

    One method per data type returns a ``pyarrow.Table`` for ``[since, until)`` (µs since
    the epoch, an aware ``datetime``, or ISO 8601 text) and optional tokens / markets.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"no archive at {self.root}")

    def incremental_book_L2(
        self,
        since: Any = None,
        until: Any = None,
        tokens: Iterable[str] | None = None,
        markets: Iterable[str] | None = None,
    ) -> Any:
        """Level updates and snapshots, in arrival order."""
        return read_table(self.root, L2, _t(since), _t(until), _list(tokens), _list(markets))

    def trades(
        self,
        since: Any = None,
        until: Any = None,
        tokens: Iterable[str] | None = None,
        markets: Iterable[str] | None = None,
    ) -> Any:
        """Trades (every source polytape stored or heard), by time."""
        return read_table(self.root, TRADES, _t(since), _t(until), _list(tokens), _list(markets))

    def gaps(self, since: Any = None, until: Any = None, tokens: Iterable[str] | None = None) -> Any:
        """The gap ledger: closed gaps overlapping the range, plus the open ones."""
        s, u = _t(since), _t(until)
        closed = read_table(self.root, GAPS, s, u, _list(tokens))
        wanted = set(tokens) if tokens is not None else None
        extra = [
            {**g, "seq": None}
            for g in open_gaps(self.root)
            if (wanted is None or g["token_id"] in wanted) and (u is None or g["start"] < u)
        ]
        if not extra:
            return closed
        return pa.concat_tables([closed, pa.Table.from_pylist(extra, schema=closed.schema)])

    def book_snapshot_25(self, since: Any, until: Any, tokens: Iterable[str] | None = None) -> Any:
        """Top 25 levels each time they change (Tardis ``book_snapshot_25``)."""
        from polytape.archive.derive import derived_table

        return derived_table(self.root, "book_snapshot_25", _t(since), _t(until), _list(tokens))

    def book_snapshot_5(self, since: Any, until: Any, tokens: Iterable[str] | None = None) -> Any:
        """Top 5 levels each time they change (Tardis ``book_snapshot_5``)."""
        from polytape.archive.derive import derived_table

        return derived_table(self.root, "book_snapshot_5", _t(since), _t(until), _list(tokens))

    def quotes(self, since: Any, until: Any, tokens: Iterable[str] | None = None) -> Any:
        """Best bid and ask each time either changes (Tardis ``quotes``)."""
        from polytape.archive.derive import derived_table

        return derived_table(self.root, "quotes", _t(since), _t(until), _list(tokens))

    def book_at(self, token_id: str, when: Any) -> BookAt:
        """The token's book as it stood at ``when``."""
        at = _t(when)
        if at is None:
            raise ValueError("book_at needs a time")
        return book_at(self.root, token_id, at)


def _list(items: Iterable[str] | None) -> list[str] | None:
    return None if items is None else list(items)


def _t(value: Any) -> int | None:
    from polytape.archive.timeparse import to_us

    return None if value is None else to_us(value)
