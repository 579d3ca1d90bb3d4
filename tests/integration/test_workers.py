"""Several ``polytape run`` workers on one PostgreSQL: shares, take-over after SIGKILL, cadences."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa

from polytape.errors import StoreError
from polytape.sim import SimServer
from polytape.sim.world import World
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.universe import tracked_tokens

from .books_support import mismatched
from .runproc import run_env, runs_of, start_run, stepping, terminate, wait_exit, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def subscriptions(sim: SimServer) -> Counter[str]:
    """How many simulator connections follow each asset."""
    assert sim.hub is not None
    return Counter(a for conn in sim.hub.connections for a in conn.assets)


def live_workers(store: Store) -> dict[int, dict[str, object]]:
    try:
        rows = store.fetch_all(sa.select(s.workers).where(s.workers.c.stopped_at.is_(None)))
    except StoreError:  # not migrated yet
        return {}
    return {int(r["pid"]): r for r in rows}


def divided_once(sim: SimServer, store: Store, tokens: set[str], n_workers: int) -> bool:
    """Every token followed by exactly one connection, shared by ``n_workers`` busy workers."""
    counts = subscriptions(sim)
    busy = [int(str(w["tokens"])) for w in live_workers(store).values()]
    return set(counts) == tokens and max(counts.values()) == 1 and len(busy) == n_workers and min(busy) > 0


def leases_of(store: Store, worker_id: str) -> set[str]:
    t = s.token_leases
    stmt = sa.select(t.c.token_id).where(t.c.worker_id == worker_id, t.c.released_at.is_(None))
    return {str(v) for v in store.read(lambda c: c.execute(stmt).scalars().all())}


def written_since(store: Store, tokens: set[str], since: datetime) -> set[str]:
    ob = s.orderbooks
    stmt = sa.select(ob.c.token_id).where(ob.c.token_id.in_(sorted(tokens)), ob.c.updated_at >= since)
    return {str(v) for v in store.read(lambda c: c.execute(stmt).scalars().all())}


async def test_two_workers_divide_the_tokens_and_one_takes_over_after_sigkill(
    pg_url: str, tmp_path: Path
) -> None:
    world = World(21, n_events=14, n_closed_events=1, history_days=0.5, trades_per_day=400)
    async with SimServer(world) as sim:
        env = run_env(
            sim,
            pg_url,
            POLYTAPE_WS_ASSETS_PER_CONNECTION="8",
            POLYTAPE_SYNC_LARGE_TRADES_INTERVAL="2",
            POLYTAPE_WS_SILENCE_TIMEOUT_SECONDS="20",
        )
        # Both start together on an empty schema: the migration must not race.
        a = start_run(env, tmp_path, "a.log")
        b = start_run(env, tmp_path, "b.log")
        store = Store(pg_url)
        try:
            async with stepping(sim, interval=0.1) as pause:
                await wait_until(lambda: len(live_workers(store)) == 2, 60, "two workers registered")
                await wait_until(lambda: bool(tracked_tokens(store)), 60, "a universe")
                tokens = set(tracked_tokens(store))

                shared_once = partial(divided_once, sim, store, tokens, 2)
                await wait_until(shared_once, 60, "the tokens divided, each followed once")
                workers = live_workers(store)
                share = {pid: leases_of(store, str(w["worker_id"])) for pid, w in workers.items()}
                assert not share[a.pid] & share[b.pid]
                assert share[a.pid] | share[b.pid] == tokens
                assert abs(len(share[a.pid]) - len(share[b.pid])) <= 1

                # Cadence across workers: runs of a 2 s job start about 2 s apart, not twice as often.
                await asyncio.sleep(8)
                starts = [r["started_at"] for r in runs_of(store, "sync-large-trades")][-6:]
                gaps = [(y - x).total_seconds() for x, y in itertools.pairwise(starts)]
                assert len(gaps) >= 3 and min(gaps) >= 2 * 0.9 * 0.95, gaps
                interrupted = store.fetch_all(
                    sa.select(s.job_runs).where(s.job_runs.c.error.like("interrupted%"))
                )
                assert interrupted == []  # neither start closed the other's runs

                orphans = share[a.pid]
                killed_at = datetime.now(UTC)
                t0 = time.monotonic()
                a.kill()
                await wait_exit(a, 10)
                await wait_until(
                    lambda: written_since(store, orphans, killed_at) == orphans,
                    60,
                    "the orphans recorded again",
                )
                took = time.monotonic() - t0
                await wait_until(
                    lambda: set(subscriptions(sim)) == tokens and max(subscriptions(sim).values()) == 1,
                    20,
                    "every token followed once, by the survivor",
                )
                assert leases_of(store, str(workers[b.pid]["worker_id"])) == tokens
                pause.set()
            await wait_until(lambda: not mismatched(sim, store, sorted(tokens)), 60, "exact books")
            print(f"take-over: {len(orphans)} tokens of the killed worker recorded again {took:.1f}s after")
            terminate(b)
            assert await wait_exit(b, 20) == 0
            assert set(live_workers(store)) == {a.pid}  # b stopped cleanly; a never could
            assert leases_of(store, str(workers[b.pid]["worker_id"])) == set()  # released on the way out
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.kill()
            store.close()


async def test_a_frozen_worker_is_replaced_and_gives_its_tokens_up_when_it_wakes(
    pg_url: str, tmp_path: Path
) -> None:
    """SIGSTOP: the process exists but says nothing, so only the lease time can free its tokens."""
    world = World(22, n_events=14, n_closed_events=1, history_days=0.5, trades_per_day=400)
    async with SimServer(world) as sim:
        env = run_env(
            sim, pg_url, POLYTAPE_WS_ASSETS_PER_CONNECTION="8", POLYTAPE_WS_SILENCE_TIMEOUT_SECONDS="20"
        )
        a = start_run(env, tmp_path, "a.log")
        b = start_run(env, tmp_path, "b.log")
        store = Store(pg_url)
        try:
            async with stepping(sim, interval=0.1) as pause:
                await wait_until(lambda: len(live_workers(store)) == 2, 60, "two workers registered")
                await wait_until(lambda: bool(tracked_tokens(store)), 60, "a universe")
                tokens = set(tracked_tokens(store))

                shared_once = partial(divided_once, sim, store, tokens, 2)
                await wait_until(shared_once, 60, "the tokens divided, each followed once")
                frozen_id = str(live_workers(store)[a.pid]["worker_id"])
                orphans = leases_of(store, frozen_id)
                frozen_at = datetime.now(UTC)
                t0 = time.monotonic()
                a.send_signal(signal.SIGSTOP)
                await wait_until(
                    lambda: written_since(store, orphans, frozen_at) == orphans, 60, "orphans recorded again"
                )
                took = time.monotonic() - t0
                a.send_signal(signal.SIGCONT)
                # Awake again: it finds its leases gone, unsubscribes, and gets a share back.
                await wait_until(shared_once, 60, "each token followed once again, by two workers")
                pause.set()
            await wait_until(lambda: not mismatched(sim, store, sorted(tokens)), 60, "exact books")
            print(f"take-over: {len(orphans)} tokens of the frozen worker recorded again {took:.1f}s after")
            for proc in (a, b):
                terminate(proc)
            assert await wait_exit(a, 20) == 0 and await wait_exit(b, 20) == 0
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
            store.close()
