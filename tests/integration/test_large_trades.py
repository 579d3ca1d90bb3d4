"""``sync-large-trades`` against the simulator: exactly the large trades served, on both engines."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from polytape.jobs import sync_large_trades
from polytape.jobs.base import JobContext, JobResult, run_job
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.trades import GAPS_KEY, load_watermark
from tests.integration.support import sim_context
from tests.integration.trades_truth import fill_key, growing, stored_keys, truth_keys

THRESHOLD = 300.0
LOOKBACK_H = 500.0  # the whole simulated tape (closed markets reach back ~16 days)


async def run_once(ctx: JobContext) -> JobResult:
    return await run_job(ctx, "sync-large-trades", sync_large_trades.run)


def assert_exact(store: Store, expected: set[str]) -> None:
    keys = stored_keys(store)
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes
    assert set(keys) == expected, (len(expected - set(keys)), len(set(keys) - expected))


def inject_faults(sim: SimServer, path: str) -> None:
    """Four faults in a row: the fifth attempt (the last the HTTP layer makes) succeeds."""
    sim.inject(host="data", path=path, kind="500")
    sim.inject(host="data", path=path, kind="429", retry_after=0.05)
    sim.inject(host="data", path=path, kind="slow", delay=0.8)  # past the 0.4 s client timeout
    sim.inject(host="data", path=path, kind="503")


@pytest.mark.parametrize("feed", ["v1", "v2"])
async def test_growing_tape_faults_and_late_trades(sim: SimServer, store: Store, feed: str) -> None:
    path = "/trades" if feed == "v1" else "/v2/trades"
    since = int(time.time() - LOOKBACK_H * 3600)
    async with sim_context(
        sim,
        store,
        trades_feed=feed,
        large_trade_usd_threshold=THRESHOLD,
        trades_page_size=25,
        trades_max_pages=200,
        trades_initial_lookback_hours=LOOKBACK_H,
        trades_safety_window_seconds=120,
        http_timeout_seconds=0.4,
    ) as ctx:
        inject_faults(sim, path)
        async with growing(sim):
            first = await run_once(ctx)
        assert first.status == "ok", first
        assert first.details["pages"] > 10
        watermark = load_watermark(store)
        assert watermark is not None
        # a trade reported late: older than the newest seen, inside the safety window
        cid = next(iter(m for m in sim.world.markets.values() if m.book is not None and not m.closed))
        late = sim.world.plant_trade(cid.condition_id, 1, "BUY", 2000.0, 0.4, ts=watermark - 60)
        sim.inject(host="data", path=path, kind="503", count=5)  # every attempt of one request
        async with growing(sim):
            failed = await run_once(ctx)
        assert failed.status == "error"
        assert load_watermark(store) == watermark  # nothing covered, nothing moved
        inject_faults(sim, path)
        async with growing(sim):
            again = await run_once(ctx)
        assert again.status == "ok", again
        final = await run_once(ctx)  # the tape stands still now
        assert final.status == "ok", final
    assert fill_key(late) in set(stored_keys(store))
    assert_exact(store, truth_keys(sim.world, min_usd=THRESHOLD, since=since))
    served = [f for f in sim.faults.served if f[0] == "data"]
    assert {kind for _, _, kind in served} >= {"500", "429", "slow", "503"}
    runs = store.fetch_all(sa.select(s.job_runs).where(s.job_runs.c.job_name == "sync-large-trades"))
    assert [r["status"] for r in runs] == ["ok", "error", "ok", "ok"]


@pytest.mark.parametrize("offset_cap", [3000, 10_000])
async def test_offset_cap_is_worked_around_with_time_windows(
    sim: SimServer, store: Store, offset_cap: int
) -> None:
    """~7,900 trades in the window, the API refuses offsets ≥ 3,000: still every one of them."""
    since = int(time.time() - LOOKBACK_H * 3600)
    async with sim_context(
        sim,
        store,
        large_trade_usd_threshold=0.01,
        trades_page_size=500,
        trades_max_pages=100,
        trades_initial_lookback_hours=LOOKBACK_H,
        trades_offset_cap=offset_cap,
    ) as ctx:
        result = await run_once(ctx)
    expected = truth_keys(sim.world, min_usd=0.01, since=since)
    assert len(expected) > 2 * 3000
    assert result.status == "ok", result
    assert result.details["gaps"] == []
    assert result.details["narrowings"] >= 2
    if offset_cap > 3000:  # the server's 400 was recognised, once per window, never looped on
        assert 1 <= result.details["offset_cap_refusals"] == result.details["narrowings"]
    else:
        assert result.details["offset_cap_refusals"] == 0
    refused = [r for r in sim.request_log if r.path == "/trades" and r.status == 400]
    assert len(refused) == result.details["offset_cap_refusals"]
    assert_exact(store, expected)


async def test_page_budget_leaves_a_recorded_gap(sim: SimServer, store: Store) -> None:
    async with sim_context(
        sim,
        store,
        large_trade_usd_threshold=1.0,
        trades_page_size=50,
        trades_max_pages=3,
        trades_initial_lookback_hours=LOOKBACK_H,
    ) as ctx:
        result = await run_once(ctx)
    assert result.status == "partial"
    assert result.details["pages"] == 3
    (gap,) = result.details["gaps"]
    floor = result.details["floor"]
    keys = stored_keys(store)
    assert len(keys) == 150
    oldest_stored = min(f.timestamp for f in sim.world.trades if fill_key(f) in set(keys))
    assert gap == [floor, oldest_stored]
    assert store.get_state(GAPS_KEY) == [gap]
    assert load_watermark(store) == max(f.timestamp for f in sim.world.trades if f.taker and f.usd >= 1.0)
    # everything newer than the gap is stored
    assert truth_keys(sim.world, min_usd=1.0, since=oldest_stored + 1) <= set(keys)


@pytest.mark.parametrize("feed", ["v1", "v2"])
async def test_bad_trades_are_rejected_and_the_rest_land(sim: SimServer, store: Store, feed: str) -> None:
    path = "/trades" if feed == "v1" else "/v2/trades"
    since = int(time.time() - LOOKBACK_H * 3600)
    async with sim_context(
        sim,
        store,
        trades_feed=feed,
        large_trade_usd_threshold=THRESHOLD,
        trades_page_size=50,
        trades_initial_lookback_hours=LOOKBACK_H,
    ) as ctx:
        sim.inject(host="data", path=path, kind="bad_fields", items=4, count=2)
        sim.inject(host="data", path=path, kind="malformed_json")
        result = await run_once(ctx)
    assert result.status == "ok", result
    corrupted = [c for c in sim.corrupted if c.path == path]
    assert len(corrupted) == 8
    assert result.details["rejected"] == 8
    rejected = store.fetch_all(sa.select(s.rejected_payloads))
    source = "data:trades" if feed == "v1" else "data:v2/trades"
    bad_page = "page is not valid JSON"
    reasons = [r["reason"].split(":")[0] for r in rejected if not r["reason"].startswith(bad_page)]
    assert sorted(reasons) == sorted(_reason(c.how, c.field) for c in corrupted)
    assert {r["source"] for r in rejected} == {source}
    assert sum(r["reason"].startswith(bad_page) for r in rejected) == 1
    bad_keys = {_key_of_raw(c.original, feed) for c in corrupted}
    assert_exact(store, truth_keys(sim.world, min_usd=THRESHOLD, since=since) - bad_keys)


def _reason(how: str, field: str) -> str:
    return {
        "size_string": "size is not a number",
        "timestamp_missing": "missing timestamp",
        "condition_missing": f"missing {field}",
    }.get(how, "price is absurd")


def _key_of_raw(raw: dict[str, Any], feed: str) -> str:
    from datetime import UTC, datetime

    from polytape.normalize.trades import normalize_trade_v1, normalize_trade_v2

    fn = normalize_trade_v1 if feed == "v1" else normalize_trade_v2
    return fn(raw, datetime.now(UTC))["dedupe_key"]
