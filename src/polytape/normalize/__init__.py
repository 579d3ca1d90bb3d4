"""Pure functions from raw API payloads to typed records: no I/O, no clock reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rejected:
    """An item that could not be normalized: where it came from, why, and the item."""

    source: str
    reason: str
    raw: Any
