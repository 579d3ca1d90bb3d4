"""Times on the command line: ISO 8601, epoch milliseconds, and spans back from now.

``--at``/``--since``/``--until`` take ISO 8601 (``2026-11-28T14:03:07.250Z``; no zone
means UTC; fractional seconds allowed) or epoch milliseconds (``1764338587250``);
``--since`` also takes a span back from now: ``90s``, ``30m``, ``24h``, ``7d``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}


def parse_time(text: str) -> int:
    """ISO 8601 or epoch milliseconds → µs since the epoch (``ValueError`` otherwise)."""
    raw = text.strip()
    if re.fullmatch(r"-?\d+", raw):
        return int(raw) * 1000
    if re.fullmatch(r"-?\d+\.\d+", raw):
        return round(float(raw) * 1000)
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use ISO 8601 (2026-11-28T14:03:07Z) or epoch milliseconds"
        ) from None
    return datetime_us(when)


def parse_since(text: str, now_us: int) -> int:
    """Like :func:`parse_time`, plus spans back from ``now_us`` (``30m``, ``24h``, ``7d``)."""
    match = _SPAN.match(text.strip().lower())
    if match:
        return now_us - round(float(match.group(1)) * _UNIT_US[match.group(2)])
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use ISO 8601, epoch milliseconds, or a span like 30m, 24h, 7d"
        ) from None


def datetime_us(when: datetime) -> int:
    """An aware (or UTC-naive) datetime → µs since the epoch."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _ONE_US


def to_us(value: object) -> int:
    """µs (int), a datetime, or text (:func:`parse_time`) → µs since the epoch."""
    if isinstance(value, bool):
        raise ValueError(f"bad time {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return datetime_us(value)
    if isinstance(value, str):
        return parse_time(value)
    raise ValueError(f"bad time {value!r}")
