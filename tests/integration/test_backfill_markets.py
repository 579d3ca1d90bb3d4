"""``polytape backfill markets``: historical pages, pacing, resume after failure or Ctrl-C."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from polytape.backfill import SilentReporter
from polytape.backfill.markets import run_backfill, state_key
from polytape.cli import backfill_markets_command as backfill_markets
from polytape.errors import EXIT_OK, BackfillFailed
from polytape.sim import SimServer
from polytape.store import Store
from tests.support.waiting import wait_until

from .gamma_truth import stored, truth, when
from .support import sim_context, sim_settings

FAST = {"backfill_requests_per_second": 200.0, "gamma_page_size": 1}


def closed_ids(sim: SimServer) -> list[str]:
    return sorted((e.id for e in sim.world.events.values() if e.closed), key=int)


@pytest.mark.parametrize("paging", ["keyset", "offset"])
async def test_backfill_closed_stores_history_exactly(sim: SimServer, store: Store, paging: str) -> None:
    settings = sim_settings(sim, store.url, gamma_paging=paging, **FAST)
    code = await asyncio.to_thread(backfill_markets, settings, closed=True, since=None)
    assert code == EXIT_OK
    expected = truth(sim.world, closed=True)
    assert len(expected["events"]) >= 3
    assert all(m["closed"] and not m["active"] for m in expected["markets"])
    assert stored(store) == expected
    state = store.get_state(state_key(True, None, paging))
    assert state["done"] is True and state["pages"] >= len(expected["events"])
    # a finished backfill run again starts over and changes nothing
    assert await asyncio.to_thread(backfill_markets, settings, closed=True, since=None) == EXIT_OK
    assert stored(store) == expected


async def test_backfill_since_keeps_later_events(sim: SimServer, store: Store) -> None:
    ends = sorted(when(sim.world.events[i].end_date) for i in closed_ids(sim))
    since = ends[len(ends) // 2]
    out = io.StringIO()
    settings = sim_settings(sim, store.url, **FAST)
    code = await asyncio.to_thread(
        backfill_markets, settings, closed=True, since=since.isoformat(), console=Console(file=out)
    )
    assert code == EXIT_OK and "backfill markets done" in out.getvalue()
    early = frozenset(i for i in closed_ids(sim) if when(sim.world.events[i].end_date) < since)
    assert early and stored(store) == truth(sim.world, closed=True, skip_events=early)


async def test_backfill_resumes_after_a_failed_page(sim: SimServer, store: Store) -> None:
    ids = closed_ids(sim)
    sim.inject(host="gamma", path="/events/keyset", kind="503", count=5, after=2)
    async with sim_context(sim, store, http_max_retries=0, **FAST) as ctx:
        with pytest.raises(BackfillFailed, match="page 3 failed"):
            await run_backfill(ctx, closed=True, since=None, since_at=None)
    key = state_key(True, None, "keyset")
    state = store.get_state(key)
    assert (state["pages"], state["done"]) == (2, False)
    assert stored(store) == truth(sim.world, closed=True, skip_events=frozenset(ids[2:]))

    sim.clear_faults()
    before = len(sim.request_log)
    report = SilentReporter()
    async with sim_context(sim, store, **FAST) as ctx:
        totals = await run_backfill(ctx, closed=True, since=None, since_at=None, report=report)
    assert totals.pages > 0 and "resuming after page 2" in report.notes[0]
    resumed = sim.request_log[before]
    assert resumed.query.get("after_cursor") == state["after_cursor"]  # not page one again
    assert stored(store) == truth(sim.world, closed=True)
    assert store.get_state(key)["done"] is True


async def test_backfill_cancelled_mid_way_keeps_what_it_stored(sim: SimServer, store: Store) -> None:
    ids = closed_ids(sim)
    async with sim_context(sim, store, **FAST) as ctx:
        # the third page hangs; Ctrl-C (a cancel of asyncio.run's main task) comes meanwhile
        sim.inject(host="gamma", path="/events/keyset", kind="hang", after=2)
        task = asyncio.create_task(run_backfill(ctx, closed=True, since=None, since_at=None))
        await wait_until(lambda: ("gamma", "/events/keyset", "hang") in sim.faults.served, 30, "page 3")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stored(store) == truth(sim.world, closed=True, skip_events=frozenset(ids[2:]))
    assert store.get_state(state_key(True, None, "keyset"))["pages"] == 2
    settings = sim_settings(sim, store.url, **FAST)
    assert await asyncio.to_thread(backfill_markets, settings, closed=True, since=None) == EXIT_OK
    assert stored(store) == truth(sim.world, closed=True)


def test_bad_since_is_a_usage_error(sqlite_url: str) -> None:
    from polytape.config import load_settings
    from polytape.errors import ConfigError

    with pytest.raises(ConfigError, match="bad time"):
        backfill_markets(load_settings(database_url=sqlite_url), closed=True, since="last tuesday")
