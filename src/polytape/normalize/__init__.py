"""Pure functions from raw API payloads to typed records: no I/O, no clock reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that could not be normalized: where it came from (or what kind of item it
    was: ``gamma:event``, ``unknown_event:foo``), why, and the item itself.

    The one record of a rejected item for every normalizer (Gamma, trades, books).
    """

    source: str
    reason: str
    raw: Any
