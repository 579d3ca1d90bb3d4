"""Offline, paced, resumable history loads (``polytape backfill …``).

Backfills print nothing: they report through a :class:`Reporter` (``polytape.cli``
renders it as a progress bar) and raise typed errors (:class:`ConfigError` for a bad
window, :class:`BackfillFailed` when a page fails); the CLI turns those into a line and
an exit code. Imports: clients (through the context), ingest, normalize, paging, runtime,
store. Never jobs, app or cli.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

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


class Pacer:
    """At most ``rate`` calls per second: ``await pacer.wait()`` before each request."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        """Sleep until the next request may start."""
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self.interval


class Reporter(Protocol):
    """How a backfill tells the operator where it stands (the CLI draws a progress bar)."""

    def begin(self, total: int | None, done: int) -> None:
        """The work starts: ``total`` units (None: unknown), ``done`` of them already."""
        ...

    def progress(self, done: int, stats: str) -> None:
        """``done`` units so far; ``stats`` says it in words."""
        ...

    def note(self, text: str, *, warning: bool = False) -> None:
        """A line worth reading (resuming, something not reachable)."""
        ...


class SilentReporter:
    """A :class:`Reporter` that says nothing (tests, scripts)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def begin(self, total: int | None, done: int) -> None:
        return None

    def progress(self, done: int, stats: str) -> None:
        return None

    def note(self, text: str, *, warning: bool = False) -> None:
        self.notes.append(text)
