"""A small asyncio scheduler: one loop per job, never overlapping itself.

Each job gets its own task, so a slow job never delays another. After a run the
next one is due ``cadence x slowdown`` later, with jitter; ``slowdown`` is the
largest throttle factor of the hosts the job talks to (≥ 2 while a host has
recently answered 429), so a throttled job polls less often and recovers as the
host does.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from polytape.jobs.base import JobResult

log = structlog.get_logger("polytape.scheduler")

# Which API hosts each job talks to (names of ``ApiClients.throttles``).
JOB_HOSTS: dict[str, tuple[str, ...]] = {
    "sync-gamma-events": ("gamma",),
    "sync-tag-metadata": ("gamma",),
    "refresh-universe": (),
    "sync-open-interest": ("data",),
    "sync-large-trades": ("data",),
    "sync-orderbooks": ("clob",),
    "run-signal-engine": (),
}
MAX_STRETCH = 8.0


@dataclass
class ScheduledJob:
    """One job on a cadence; ``run`` executes and audits it once."""

    name: str
    cadence: float
    run: Callable[[], Awaitable[JobResult | None]]
    slowdown: Callable[[], float] = lambda: 1.0
    first_delay: float = 0.0
    runs: int = 0
    last_status: str | None = None
    next_due: float = field(default=0.0)


class Scheduler:
    """Runs jobs on their cadences until :meth:`stop`; then lets in-flight runs finish."""

    def __init__(self, jobs: Sequence[ScheduledJob], *, jitter: float = 0.1, seed: int | None = None) -> None:
        self.jobs = list(jobs)
        self.jitter = jitter
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[str] = set()

    @property
    def in_flight(self) -> set[str]:
        return set(self._running)

    def start(self) -> None:
        for job in self.jobs:
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"job:{job.name}"))

    def stop(self) -> None:
        """Stop starting new runs (in-flight ones go on until :meth:`drain`)."""
        self._stopping.set()

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight runs, then cancel what is left."""
        self.stop()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled jobs still running at shutdown", jobs=sorted(self._running))
            await asyncio.gather(*pending, return_exceptions=True)

    def next_delay(self, job: ScheduledJob) -> float:
        stretch = min(MAX_STRETCH, max(1.0, job.slowdown()))
        base = job.cadence * stretch
        return max(0.0, base * (1.0 + self._rng.uniform(-self.jitter, self.jitter)))

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if we should go on."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def _loop(self, job: ScheduledJob) -> None:
        if job.first_delay and not await self._sleep(job.first_delay):
            return
        while not self._stopping.is_set():
            started = time.monotonic()
            self._running.add(job.name)
            try:
                result = await job.run()
                job.last_status = result.status if result else None
            except asyncio.CancelledError:
                raise
            except Exception:  # run_job records failures; this is a last guard
                log.exception("job loop error", job=job.name)
                job.last_status = "error"
            finally:
                self._running.discard(job.name)
                job.runs += 1
            delay = self.next_delay(job)
            job.next_due = started + delay
            if not await self._sleep(max(0.0, started + delay - time.monotonic())):
                return
