"""Locks and leases across a restart of PostgreSQL (a private server: the shared one never goes down)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from polytape.sim import SimServer
from polytape.sim.world import World
from polytape.store import Store
from polytape.store.locks import AdvisoryLock, LockLost, run_guarded
from polytape.store.universe import tracked_tokens

from .private_pg import PrivatePostgres, private_pg
from .runproc import run_env, start_run, stepping, terminate, wait_exit, wait_until
from .test_workers import live_workers, subscriptions

__all__ = ["private_pg"]
pytestmark = pytest.mark.postgres


async def test_a_lock_lost_to_a_restart_stops_the_work_it_guards_at_once(private_pg: PrivatePostgres) -> None:
    store = Store.open(private_pg.url)
    other = Store(private_pg.url)
    try:
        lock = AdvisoryLock(store, "job:sync-large-trades")
        assert await asyncio.to_thread(lock.try_acquire)
        started = asyncio.Event()
        cancelled: list[bool] = []

        async def work() -> None:
            started.set()
            try:
                await asyncio.sleep(600)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        guarded = asyncio.create_task(run_guarded(lock, work, check_every=0.25))
        await started.wait()
        await asyncio.sleep(0.6)
        assert not guarded.done()  # held: the work goes on
        await asyncio.to_thread(private_pg.restart)
        t0 = time.monotonic()
        with pytest.raises(LockLost):
            await asyncio.wait_for(guarded, 15)
        assert cancelled == [True]
        assert time.monotonic() - t0 < 10
        # Another worker can take it now; the loser lets go without an error.
        theirs = AdvisoryLock(other, "job:sync-large-trades")
        assert await asyncio.to_thread(theirs.try_acquire)
        assert not await asyncio.to_thread(lock.held)
        await asyncio.to_thread(lock.release)
        theirs.release()
    finally:
        store.close()
        other.close()


@pytest.mark.slow
async def test_after_a_database_restart_each_token_is_still_followed_once(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """The finding: after a restart the first process kept its feed and the second took the lock as well."""
    world = World(23, n_events=12, n_closed_events=1, history_days=0.5, trades_per_day=400)
    async with SimServer(world) as sim:
        env = run_env(
            sim,
            private_pg.url,
            POLYTAPE_WS_ASSETS_PER_CONNECTION="8",
            POLYTAPE_WS_SILENCE_TIMEOUT_SECONDS="20",
        )
        a = start_run(env, tmp_path, "a.log")
        b = start_run(env, tmp_path, "b.log")
        store = Store(private_pg.url)
        try:
            async with stepping(sim, interval=0.1):
                await wait_until(lambda: len(live_workers(store)) == 2, 60, "two workers registered")
                await wait_until(lambda: bool(tracked_tokens(store)), 60, "a universe")
                tokens = set(tracked_tokens(store))

                def followed_once() -> bool:
                    counts = subscriptions(sim)
                    return set(counts) == tokens and max(counts.values()) == 1

                await wait_until(followed_once, 60, "each token followed once")
                await asyncio.to_thread(private_pg.restart)
                await asyncio.sleep(3)
                # Every few polls, never two followers of one token, and both workers keep working.
                deadline = time.monotonic() + 25
                while time.monotonic() < deadline:
                    counts = subscriptions(sim)
                    assert not counts or max(counts.values()) == 1, "a token followed twice after the restart"
                    await asyncio.sleep(0.2)
                await wait_until(followed_once, 60, "each token followed once after the restart")
                assert a.poll() is None and b.poll() is None
            for proc in (a, b):
                terminate(proc)
            assert await wait_exit(a, 20) == 0 and await wait_exit(b, 20) == 0
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.kill()
            store.close()
