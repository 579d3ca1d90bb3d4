"""HostThrottle's state machine, on a fake clock, plus its async slot accounting."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given
from hypothesis import strategies as st

from polytape.http import HostThrottle, HttpConfig, HttpSession


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_concurrency: int = 8, recover_after: int = 3, **kw: float) -> tuple[HostThrottle, FakeClock]:
    clock = FakeClock()
    throttle = HostThrottle(
        "h",
        max_concurrency=max_concurrency,
        recover_after=recover_after,
        clock=clock,
        rng=random.Random(0),
        **kw,
    )
    return throttle, clock


def test_starts_open() -> None:
    throttle, _ = make()
    assert throttle.limit == 8
    assert not throttle.is_throttled
    assert throttle.wait_time() == 0
    assert throttle.slowdown == 1


def test_429_halves_down_to_one() -> None:
    throttle, _ = make()
    limits = []
    for _ in range(5):
        throttle.on_throttled(0)
        limits.append(throttle.limit)
    assert limits == [4, 2, 1, 1, 1]
    assert throttle.throttled_count == 5


def test_retry_after_sets_not_before_for_the_host() -> None:
    throttle, clock = make()
    assert throttle.on_throttled(2.5) == 2.5
    assert throttle.wait_time() == 2.5
    clock.now += 1
    assert throttle.wait_time() == 1.5
    throttle.on_throttled(0.5)  # a shorter hint never shortens the pause
    assert throttle.wait_time() == 1.5


def test_without_retry_after_backoff_grows_and_is_capped() -> None:
    throttle, clock = make(backoff_base=1.0, backoff_max=8.0)
    pauses = []
    for _ in range(6):
        pauses.append(throttle.on_throttled())
        clock.now += 100  # let each pause expire
    assert pauses[0] <= 1.0
    assert pauses[3] >= 4.0  # ceiling 8, at least half of it
    assert all(p <= 8.0 for p in pauses)


def test_recovers_additively_after_consecutive_successes() -> None:
    throttle, _ = make(max_concurrency=4, recover_after=3)
    throttle.on_throttled(0)
    throttle.on_throttled(0)
    assert throttle.limit == 1
    seen = []
    for _ in range(9):
        throttle.on_success()
        seen.append(throttle.limit)
    assert seen == [1, 1, 2, 2, 2, 3, 3, 3, 4]
    for _ in range(10):
        throttle.on_success()
    assert throttle.limit == 4


def test_a_429_resets_the_success_streak() -> None:
    throttle, _ = make(max_concurrency=4, recover_after=2)
    throttle.on_throttled(0)
    throttle.on_success()
    throttle.on_throttled(0)
    throttle.on_success()
    assert throttle.limit == 1


def test_a_burst_of_429s_from_one_generation_halves_once() -> None:
    throttle, _ = make()
    generation = throttle.generation
    for _ in range(4):
        throttle.on_throttled(1.0, generation=generation)
    assert throttle.limit == 4
    assert throttle.throttled_count == 4
    throttle.on_throttled(1.0, generation=throttle.generation)
    assert throttle.limit == 2


def test_is_throttled_until_cooldown_and_recovery() -> None:
    throttle, clock = make(max_concurrency=2, recover_after=1, cooldown=60.0)
    throttle.on_throttled(1.0)
    assert throttle.is_throttled
    assert throttle.slowdown == 2
    throttle.on_success()
    assert throttle.limit == 2
    clock.now += 30
    assert throttle.is_throttled
    clock.now += 31
    assert not throttle.is_throttled
    assert throttle.slowdown == 1


@given(st.lists(st.sampled_from(["ok", "429", "tick"]), max_size=200), st.integers(1, 16))
def test_limit_stays_in_bounds_and_always_recovers(events: list[str], max_concurrency: int) -> None:
    throttle, clock = make(max_concurrency=max_concurrency, recover_after=2)
    for event in events:
        if event == "ok":
            throttle.on_success()
        elif event == "429":
            throttle.on_throttled(None)
        else:
            clock.now += 5
        assert 1 <= throttle.limit <= max_concurrency
        assert throttle.wait_time() <= throttle.backoff_max
    for _ in range(2 * max_concurrency):
        throttle.on_success()
    assert throttle.limit == max_concurrency
    clock.now += throttle.cooldown + throttle.backoff_max
    assert not throttle.is_throttled


async def test_slots_never_exceed_the_limit() -> None:
    throttle = HostThrottle("h", max_concurrency=3)
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        async with throttle.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1

    await asyncio.gather(*(work() for _ in range(12)))
    assert peak == 3
    assert throttle.in_flight == 0


async def test_waiters_proceed_when_the_limit_recovers() -> None:
    throttle = HostThrottle("h", max_concurrency=2, recover_after=1)
    throttle.on_throttled(0)
    assert throttle.limit == 1
    await throttle.acquire()
    second = asyncio.create_task(throttle.acquire())
    await asyncio.sleep(0.01)
    assert not second.done()
    throttle.on_success()  # limit back to 2 frees a slot
    await asyncio.wait_for(second, 1)
    assert throttle.in_flight == 2


async def test_acquire_waits_for_the_pause() -> None:
    throttle = HostThrottle("h")
    throttle.on_throttled(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with throttle.slot():
        assert loop.time() - started >= 0.09


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    throttle = HostThrottle("h", max_concurrency=1)
    await throttle.acquire()
    waiter = asyncio.create_task(throttle.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    throttle.release()
    assert throttle.in_flight == 0
    await asyncio.wait_for(throttle.acquire(), 1)


def test_session_keys_throttles_by_host_and_port() -> None:
    session = HttpSession(HttpConfig(max_concurrency=5))
    a = session.throttle_for("https://clob.polymarket.com")
    assert session.throttle_for("https://clob.polymarket.com/books") is a
    assert session.throttle_for("http://127.0.0.1:8001/gamma") is not session.throttle_for(
        "http://127.0.0.1:8002/gamma"
    )
    assert a.max_concurrency == 5
    assert set(session.throttles) == {"clob.polymarket.com", "127.0.0.1:8001", "127.0.0.1:8002"}


async def test_woken_then_cancelled_waiter_passes_the_slot_on() -> None:
    throttle = HostThrottle("h", max_concurrency=1)
    await throttle.acquire()
    first = asyncio.create_task(throttle.acquire())
    second = asyncio.create_task(throttle.acquire())
    await asyncio.sleep(0)
    throttle.release()  # wakes `first`
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
    assert throttle.in_flight == 1
