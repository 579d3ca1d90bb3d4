"""Offline, paced, resumable history loads (``polytape backfill …``)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

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


EXIT_INTERRUPTED = 130


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


def interruptible(main: Callable[[], Coroutine[Any, Any, int]], console: Console) -> int:
    """Run a backfill to its exit code; Ctrl-C keeps what was committed and says how to resume."""
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        console.print("interrupted: every stored page is kept; run the same command again to resume")
        return EXIT_INTERRUPTED
