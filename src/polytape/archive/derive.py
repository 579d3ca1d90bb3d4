"""Tardis's derived book types, rebuilt from ``incremental_book_L2``.

``book_snapshot_N``: a row each time any of the top N levels of either side changes
(price or amount), asks best first then bids, interleaved per level like Tardis:
``asks[0].price, asks[0].amount, bids[0].price, bids[0].amount, asks[1].price, ...``;
a side with fewer levels leaves the rest empty. ``quotes``: a row each time the best
bid or ask (price or amount) changes. Rows come per message (the rows of one snapshot
or one update message), with that message's server and local times.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from polytape.archive.reader import book_at, read_table
from polytape.archive.schema import L2

EXCHANGE = "polymarket"
DERIVED = {"book_snapshot_25": 25, "book_snapshot_5": 5, "quotes": 1}


def derived_schema(kind: str) -> Any:
    """Columns of a derived type, in Tardis's order."""
    head = [
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("timestamp", pa.int64()),
        ("local_timestamp", pa.int64()),
    ]
    if kind == "quotes":
        return pa.schema(
            head + [(n, pa.float64()) for n in ("ask_amount", "ask_price", "bid_price", "bid_amount")]
        )
    n = DERIVED[kind]
    cols = []
    for i in range(n):
        cols += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    return pa.schema(head + [(c, pa.float64()) for c in cols])


def derived_table(
    root: Path, kind: str, since: int | None, until: int | None, tokens: Sequence[str] | None = None
) -> Any:
    """The ``kind`` rows (``book_snapshot_25``, ``book_snapshot_5``, ``quotes``) of ``[since, until)``."""
    if kind not in DERIVED:
        raise ValueError(f"unknown derived type {kind!r}")
    rows_table = read_table(root, L2, since, until, tokens)
    ids = sorted(tokens) if tokens else sorted(set(rows_table.column("token_id").to_pylist()))
    out: list[tuple[Any, ...]] = []
    for token_id in ids:
        mine = rows_table.filter(pc.equal(rows_table.column("token_id"), token_id))
        out.extend(_derive_token(root, kind, token_id, since, mine))
    out.sort(key=lambda r: (r[3], r[2]))
    schema = derived_schema(kind)
    columns: list[Any] = list(zip(*out, strict=True)) if out else [() for _ in schema]
    return pa.Table.from_arrays(
        [pa.array(list(c), f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


def _derive_token(
    root: Path, kind: str, token_id: str, since: int | None, rows: Any
) -> list[tuple[Any, ...]]:
    depth = DERIVED[kind]
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    known = False
    snap_ts = -1  # server time of the snapshot in force (a seed from before ``since`` counts as -1)
    if since is not None:
        start = book_at(root, token_id, since - 1, check_gaps=False)
        if start.found:
            bids, asks, known = dict(start.bids), dict(start.asks), True
    cols = {
        name: rows.column(name).to_pylist()
        for name in ("timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount", "seq")
    }
    n = len(cols["seq"])
    out: list[tuple[Any, ...]] = []
    last: tuple[Any, ...] | None = None
    i = 0
    while i < n:
        ts, local, snap = cols["timestamp"][i], cols["local_timestamp"][i], cols["is_snapshot"][i]
        j = i
        while (
            j + 1 < n
            and cols["is_snapshot"][j + 1] == snap
            and cols["local_timestamp"][j + 1] == local
            and cols["timestamp"][j + 1] == ts
            and cols["seq"][j + 1] == cols["seq"][j] + 1
        ):
            j += 1
        if snap:
            bids, asks, known, snap_ts = {}, {}, True, ts
        elif ts < snap_ts:
            i = j + 1
            continue  # older than the snapshot in force: covered by it
        for k in range(i, j + 1):
            levels = bids if cols["side"][k] == "bid" else asks
            amount = cols["amount"][k]
            if amount > 0.0:
                levels[cols["price"][k]] = amount
            else:
                levels.pop(cols["price"][k], None)
        i = j + 1
        if not known:
            continue  # updates before the first snapshot cannot be placed
        top = _top(kind, depth, bids, asks)
        if top != last:
            last = top
            out.append((EXCHANGE, token_id, ts, local, *top))
    return out


def _top(kind: str, depth: int, bids: dict[float, float], asks: dict[float, float]) -> tuple[Any, ...]:
    b = (
        sorted(bids.items(), reverse=True)[:depth]
        if len(bids) > depth
        else sorted(bids.items(), reverse=True)
    )
    a = sorted(asks.items())[:depth]
    if kind == "quotes":
        bp, ba = b[0] if b else (None, None)
        ap, aa = a[0] if a else (None, None)
        return (aa, ap, bp, ba)
    flat: list[float | None] = []
    for i in range(depth):
        ap, aa = a[i] if i < len(a) else (None, None)
        bp, ba = b[i] if i < len(b) else (None, None)
        flat += [ap, aa, bp, ba]
    return tuple(flat)
