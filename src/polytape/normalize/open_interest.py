"""Data API ``/oi`` rows → ``market_metrics_ts`` rows (pure: no I/O, no clock).

``GET /oi?market=a,b`` answers ``[{"market": "0x…", "value": <number>}]`` (reference.md
§2.3). A requested market missing from the answer is a gap, never a zero; a row for a
market that was not asked for is ignored; a bad row is rejected with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

REJECT_SOURCE = "data:oi"
MAX_OPEN_INTEREST = 1e12  # USD; anything above is absurd


class OpenInterestRecord(TypedDict):
    """A row of ``market_metrics_ts`` carrying only ``open_interest``."""

    condition_id: str
    ts: datetime
    open_interest: float


@dataclass
class OpenInterestBatch:
    """One ``/oi`` answer: rows to store, requested markets absent, rejected items."""

    rows: list[OpenInterestRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: int = 0
    rejected: list[tuple[str, Any]] = field(default_factory=list)
    """``(reason, raw item)`` pairs."""


def _value(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"value is not a number: {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or value < 0 or value > MAX_OPEN_INTEREST:
        raise ValueError(f"value is absurd: {raw!r}")
    return value


def normalize_open_interest(
    items: Iterable[Any], requested: Sequence[str], ts: datetime
) -> OpenInterestBatch:
    """Rows for the requested markets present in ``items``; the others listed as missing."""
    wanted = {cid.lower(): cid for cid in requested}
    batch = OpenInterestBatch()
    found: dict[str, OpenInterestRecord] = {}
    for item in items:
        if not isinstance(item, dict):
            batch.rejected.append((f"row is not an object: {type(item).__name__}", item))
            continue
        market = item.get("market")
        if not isinstance(market, str) or not market:
            batch.rejected.append((f"missing or bad market: {market!r}", item))
            continue
        try:
            value = _value(item.get("value"))
        except ValueError as exc:
            batch.rejected.append((str(exc), item))
            continue
        cid = wanted.get(market.lower())
        if cid is None:
            batch.unexpected += 1
            continue
        found[cid] = OpenInterestRecord(condition_id=cid, ts=ts, open_interest=value)
    batch.rows = list(found.values())
    batch.missing = [cid for cid in requested if cid not in found]
    return batch
