"""Adaptive per-host limiter of the HTTP layer (no I/O of its own).

One :class:`HostThrottle` per host is shared by every client of that host (through an
:class:`~polytape.http.client.HttpSession`): concurrency follows AIMD, a 429 pauses the
whole host. The runner reads :attr:`HostThrottle.slowdown` to stretch job cadences.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from polytape.http.config import HttpConfig


class HostThrottle:
    """Adaptive limiter for one host, shared by every client talking to it.

    Concurrency follows AIMD: it starts at ``max_concurrency``, halves on a 429 (at most
    once per *generation*, so a burst of 429s from requests sent together counts once)
    down to 1, and grows by one after ``recover_after`` consecutive successes. A 429 also
    sets ``not_before``, a monotonic instant before which no request to the host starts:
    the server's Retry-After, else an exponential backoff on consecutive throttles.
    """

    def __init__(
        self,
        host: str,
        *,
        max_concurrency: int = 8,
        recover_after: int = 10,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1 or recover_after < 1:
            raise ValueError("max_concurrency and recover_after must be at least 1")
        self.host = host
        self.max_concurrency = max_concurrency
        self.recover_after = recover_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.cooldown = cooldown
        self.limit = max_concurrency
        self.in_flight = 0
        self.not_before = -math.inf
        self.throttled_count = 0
        self.last_throttled_at: float | None = None
        self.generation = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._successes = 0
        self._strikes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_config(cls, host: str, config: HttpConfig) -> HostThrottle:
        """A throttle with the limits and backoff of ``config``."""
        return cls(
            host,
            max_concurrency=config.max_concurrency,
            recover_after=config.recover_after,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            cooldown=config.throttle_cooldown,
        )

    @property
    def is_throttled(self) -> bool:
        """True while the host is slowed down: limit below max, paused, or a recent 429."""
        now = self._clock()
        recent = self.last_throttled_at is not None and now - self.last_throttled_at < self.cooldown
        return recent or self.limit < self.max_concurrency or now < self.not_before

    @property
    def slowdown(self) -> float:
        """Factor (≥ 1) by which a job polling this host should stretch its interval."""
        factor = self.max_concurrency / self.limit
        return max(factor, 2.0) if self.is_throttled else factor

    def wait_time(self) -> float:
        """Seconds until requests to the host may start again (0 when they may now)."""
        return max(0.0, self.not_before - self._clock())

    def on_success(self) -> None:
        """Count an answer that was not throttled; grow the limit after enough of them."""
        self._strikes = 0
        if self.limit >= self.max_concurrency:
            self._successes = 0
            return
        self._successes += 1
        if self._successes >= self.recover_after:
            self._successes = 0
            self.limit += 1
            self._wake()

    def on_throttled(self, retry_after: float | None = None, *, generation: int | None = None) -> float:
        """Record a 429 and pause the host; return the pause in seconds.

        ``generation`` is what :meth:`acquire` returned for the throttled request; a 429
        from an older generation pauses the host but does not shrink it again.
        """
        now = self._clock()
        self.throttled_count += 1
        self.last_throttled_at = now
        self._successes = 0
        if generation is None or generation == self.generation:
            self.generation += 1
            self.limit = max(1, self.limit // 2)
            self._strikes += 1
        pause = retry_after if retry_after is not None else self._backoff()
        self.not_before = max(self.not_before, now + max(0.0, pause))
        return self.not_before - now

    def _backoff(self) -> float:
        """Exponential pause on consecutive throttles, with half of it jittered."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, self._strikes - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def acquire(self) -> int:
        """Wait for the pause to end and a free slot; return the current generation."""
        while True:
            pause = self.wait_time()
            if pause > 0:
                await asyncio.sleep(pause)
            elif self.in_flight < self.limit:
                self.in_flight += 1
                return self.generation
            else:
                await self._wait_for_slot()

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self.in_flight -= 1
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """``async with throttle.slot() as generation:`` around one request."""
        generation = await self.acquire()
        try:
            yield generation
        finally:
            self.release()

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, then cancelled: pass the slot on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Wake as many waiters as there are free slots; they re-check on waking."""
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
