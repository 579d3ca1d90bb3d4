"""``sync-open-interest`` against the simulator: one row per tracked market per snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from polytape.jobs import sync_open_interest
from polytape.jobs.base import JobContext, JobResult, run_job
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.universe import tracked_condition_ids
from tests.integration.support import sim_context

KNOBS = {"min_liquidity": 0.0, "min_volume": 0.0, "min_oi": 0.0, "oi_batch_size": 7}


async def run_once(ctx: JobContext, at: datetime) -> JobResult:
    ctx.clock = lambda: at
    return await run_job(ctx, "sync-open-interest", sync_open_interest.run)


def snapshot(store: Store, ts: datetime) -> dict[str, float | None]:
    t = s.market_metrics_ts
    rows = store.fetch_all(sa.select(t).where(t.c.ts == ts))
    return {r["condition_id"]: r["open_interest"] for r in rows}


def served(sim: SimServer, condition_ids: list[str]) -> dict[str, float]:
    world = sim.world
    return {
        cid: round(world.open_interest[cid], 6)
        for cid in condition_ids
        if world.markets[cid].oi_servable and cid in world.open_interest
    }


async def test_snapshots_match_the_simulator(sim: SimServer, store: Store) -> None:
    t1 = datetime(2026, 11, 20, 12, 0, 0, 654_321, tzinfo=UTC)
    async with sim_context(sim, store, **KNOBS) as ctx:
        sim.inject(host="data", path="/oi", kind="500")
        sim.inject(host="data", path="/oi", kind="429", retry_after=0.05)
        first = await run_once(ctx, t1)  # builds the universe first (empty database)
        tracked = tracked_condition_ids(store)
        assert len(tracked) > 20
        truth1 = served(sim, tracked)
        unservable = sorted(set(tracked) - set(truth1))
        assert unservable  # the simulator plants markets /oi leaves out
        await sim.step(5)  # open interest moves
        t2 = t1 + timedelta(minutes=5)
        second = await run_once(ctx, t2)
    truth2 = served(sim, tracked)
    assert snapshot(store, t1.replace(microsecond=0)) == truth1
    assert snapshot(store, t2.replace(microsecond=0)) == truth2
    assert truth1 != truth2
    assert store.count(s.market_metrics_ts) == len(truth1) + len(truth2)  # never a zero for a gap
    for result in (first, second):
        assert result.status == "partial"
        assert result.rows_written == len(truth1)
        assert result.details["gaps"] == len(unservable)
        assert sorted(result.details["missing_markets"]) == unservable
        assert result.details["markets"] == len(tracked)


async def test_failed_batch_and_bad_rows_are_gaps(sim: SimServer, store: Store) -> None:
    t1 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    async with sim_context(sim, store, **KNOBS) as ctx:
        await run_once(ctx, t1)
        tracked = tracked_condition_ids(store)
        sim.inject(host="data", path="/oi", kind="503", count=5)  # the first batch gives up
        sim.inject(host="data", path="/oi", kind="bad_fields", items=2, corruption="value_string")
        t2 = t1 + timedelta(minutes=5)
        result = await run_once(ctx, t2)
        got = snapshot(store, t2)
        again = await run_once(ctx, t2)  # a rerun of the same snapshot fills the gaps, once
    truth = served(sim, tracked)
    first_batch = tracked[:7]
    bad = [c for c in sim.corrupted if c.path == "/oi"]
    bad_ids = {c.original["market"] for c in bad}
    assert len(bad_ids) == 2
    assert set(got).isdisjoint(bad_ids)
    assert result.details["failed_batches"] == 1
    assert result.details["rejected"] == 2
    assert {k: v for k, v in truth.items() if k not in bad_ids and k not in first_batch} == {
        k: v for k, v in got.items() if k not in first_batch
    }
    assert again.status == "partial"
    assert snapshot(store, t2) == truth
    rejected = store.fetch_all(sa.select(s.rejected_payloads))
    assert {r["source"] for r in rejected} == {"data:oi"}
    assert len(rejected) == 2
