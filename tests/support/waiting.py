"""Waiting for a condition, and keeping the simulated world moving meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any


async def wait_until(
    cond: Callable[[], Awaitable[bool] | bool],
    timeout: float,
    what: str = "the condition",
    *,
    every: float = 0.05,
    blocking: bool = False,
) -> float:
    """Poll ``cond`` until true; return the seconds it took (fail the test on timeout).

    ``cond`` may return an awaitable. ``blocking=True`` runs it in a worker thread (it
    reads the database or a file), so the event loop (and an in-process simulator) runs on.
    """
    start = time.monotonic()
    while True:
        outcome = await asyncio.to_thread(cond) if blocking else cond()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


@asynccontextmanager
async def stepping(sim: Any, every: float = 0.02, ticks: int = 1) -> AsyncIterator[asyncio.Event]:
    """Advance ``sim``'s world ``ticks`` steps every ``every`` seconds while the block runs;
    setting the yielded event pauses it (the step under way completes)."""
    pause = asyncio.Event()

    async def loop() -> None:
        while not pause.is_set():
            await sim.step(ticks)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield pause
    finally:
        pause.set()
        await task
