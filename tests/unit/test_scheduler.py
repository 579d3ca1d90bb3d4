"""The scheduler: cadence, no overlap, isolation of slow jobs, throttle stretch, drain."""

from __future__ import annotations

import asyncio
import functools
import time

from polytape.jobs.base import JobResult
from polytape.scheduler import ScheduledJob, Scheduler
from tests.support.waiting import wait_until

wait_for = functools.partial(wait_until, timeout=5.0, every=0.005)


async def test_jobs_repeat_and_never_overlap_themselves() -> None:
    active = 0
    max_active = 0

    async def slowish() -> JobResult:
        nonlocal active, max_active
        active += 1
        max_active = max(max_active, active)
        await asyncio.sleep(0.03)  # longer than the cadence
        active -= 1
        return JobResult()

    job = ScheduledJob("a", 0.001, slowish)
    sched = Scheduler([job], jitter=0)
    sched.start()
    await wait_for(lambda: job.runs >= 4)
    await sched.drain(1.0)
    assert max_active == 1


async def test_slow_job_does_not_delay_another() -> None:
    release = asyncio.Event()

    async def stuck() -> JobResult:
        await release.wait()
        return JobResult()

    async def quick() -> JobResult:
        return JobResult()

    slow, fast = ScheduledJob("slow", 0.01, stuck), ScheduledJob("fast", 0.01, quick)
    sched = Scheduler([slow, fast], jitter=0)
    sched.start()
    await wait_for(lambda: fast.runs >= 5)
    assert slow.runs == 0 and sched.in_flight == {"slow"}
    release.set()
    await sched.drain(1.0)
    assert slow.runs == 1


async def test_failing_job_is_retried_next_tick() -> None:
    calls = 0

    async def boom() -> JobResult:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    job = ScheduledJob("boom", 0.005, boom)
    sched = Scheduler([job], jitter=0)
    sched.start()
    await wait_for(lambda: calls >= 3)
    await sched.drain(1.0)
    assert job.last_status == "error"


def test_throttled_host_stretches_interval_and_recovers() -> None:
    factor = 4.0

    async def noop() -> JobResult:
        return JobResult()

    job = ScheduledJob("t", 10.0, noop, slowdown=lambda: factor)
    sched = Scheduler([job], jitter=0)
    assert sched.next_delay(job) == 40.0
    factor = 100.0
    assert sched.next_delay(job) == 80.0  # capped
    factor = 1.0
    assert sched.next_delay(job) == 10.0


def test_jitter_stays_within_bounds() -> None:
    async def noop() -> JobResult:
        return JobResult()

    job = ScheduledJob("j", 100.0, noop)
    sched = Scheduler([job], jitter=0.1, seed=3)
    delays = [sched.next_delay(job) for _ in range(200)]
    assert all(90.0 <= d <= 110.0 for d in delays)
    assert len(set(delays)) > 100


async def test_drain_waits_for_in_flight_then_cancels() -> None:
    finished = []

    async def short() -> JobResult:
        await asyncio.sleep(0.05)
        finished.append("short")
        return JobResult()

    async def endless() -> JobResult:
        await asyncio.sleep(60)
        return JobResult()

    sched = Scheduler([ScheduledJob("short", 10, short), ScheduledJob("endless", 10, endless)], jitter=0)
    sched.start()
    await wait_for(lambda: sched.in_flight == {"short", "endless"})
    t0 = time.monotonic()
    await sched.drain(0.5)
    assert finished == ["short"]
    assert time.monotonic() - t0 < 5  # generous: the endless job was cancelled, not awaited
    assert sched.in_flight == set()
