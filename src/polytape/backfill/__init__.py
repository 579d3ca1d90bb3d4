"""Offline, paced, resumable history loads (``polytape backfill …``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from polytape.errors import ConfigError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime) -> datetime:
    """``30d``, ``12h``, ``90m``, ``2026-10-01`` or an ISO datetime → aware UTC datetime."""
    m = _RELATIVE.match(value)
    if m:
        amount, unit = float(m.group(1)), m.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"bad time {value!r}: use 30d, 12h, 90m, or a date like 2026-10-01") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
