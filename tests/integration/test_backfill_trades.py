"""``polytape backfill trades`` against the simulator: complete past the offset cap, resumable."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime, timedelta

from polytape.backfill import SilentReporter
from polytape.backfill.trades import Position, run_backfill, state_key
from polytape.cli import backfill_trades_command as backfill_trades
from polytape.errors import EXIT_OK
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store.trades import GAPS_KEY, add_gaps
from tests.integration.runproc import wait_until as wait_for
from tests.integration.support import sim_context, sim_settings
from tests.integration.trades_truth import fill_key, stored_keys, truth_keys

FAST = {"backfill_requests_per_second": 500.0, "trades_page_size": 500}


def assert_exact(store: Store, expected: set[str]) -> None:
    keys = stored_keys(store)
    assert not [k for k, n in Counter(keys).items() if n > 1]
    assert set(keys) == expected, (len(expected - set(keys)), len(set(keys) - expected))


async def test_window_deeper_than_the_offset_cap_is_complete(sim: SimServer, store: Store) -> None:
    since = datetime.now(UTC) - timedelta(days=30)
    start = int(since.timestamp())
    store.write(lambda tx: add_gaps(tx, [(start + 10, start + 500), (start - 500, start - 100)], since))
    settings = sim_settings(sim, store.url, **FAST)
    code = await asyncio.to_thread(
        backfill_trades, settings, since=since.isoformat(), until=None, min_usd=None, markets=[]
    )
    assert code == EXIT_OK
    expected = truth_keys(sim.world, min_usd=None, since=start)
    assert len(expected) > 2 * 3000  # several windows' worth of offsets
    assert_exact(store, expected)
    refused = [r for r in sim.request_log if r.path == "/trades" and r.status == 400]
    assert refused == []  # the cap setting (3,000) is respected: no request is refused
    assert all(int(r.query["offset"]) < 3000 for r in sim.request_log if r.path == "/trades")
    assert store.get_state(GAPS_KEY) == [[start - 500, start - 100]]  # the job's gap inside is filled
    # a second run starts over (the first one finished) and adds nothing
    again = await asyncio.to_thread(
        backfill_trades, settings, since=since.isoformat(), until=None, min_usd=None, markets=[]
    )
    assert again == EXIT_OK
    assert_exact(store, expected)


async def test_interrupted_then_resumed(sim: SimServer, store: Store) -> None:
    now = datetime.now(UTC)
    window = (int((now - timedelta(days=30)).timestamp()), int(now.timestamp()))
    key = state_key("30d", None, None, [])
    report = SilentReporter()
    async with sim_context(sim, store, **{**FAST, "trades_page_size": 200}) as ctx:
        sim.inject(host="data", path="/trades", kind="slow", delay=0.02, count=10_000)
        task = asyncio.create_task(
            run_backfill(ctx, key=key, window=window, min_usd=None, markets=[], report=report)
        )
        await wait_for(lambda: sim.count("data", "/trades") >= 8, 30, "eight pages served")
        task.cancel()  # what Ctrl-C does to the running backfill
        with contextlib.suppress(asyncio.CancelledError):
            await task
        position = Position.from_state(store.get_state(key))
        assert position is not None and not position.finished
        assert window[0] < position.hi < window[1]
        partial = set(stored_keys(store))
        assert len(partial) > 0
        # everything newer than the stored position is already in
        assert truth_keys(sim.world, min_usd=None, since=position.hi + 1) <= partial
        sim.clear_faults()
        before = sim.count("data", "/trades")
        ended = await run_backfill(ctx, key=key, window=window, min_usd=None, markets=[], report=report)
    assert ended.finished
    assert any("resuming" in note for note in report.notes)
    resumed_requests = sim.count("data", "/trades") - before
    expected = truth_keys(sim.world, min_usd=None, since=window[0])
    assert resumed_requests < len(expected) // 200  # it did not start over
    assert_exact(store, expected)
    done = Position.from_state(store.get_state(key))
    assert done is not None and done.finished


async def test_min_usd_and_market_filters(sim: SimServer, store: Store) -> None:
    since = datetime.now(UTC) - timedelta(days=30)
    start = int(since.timestamp())
    counts = Counter(f.condition_id for f in sim.world.trades if f.taker and f.usd >= 300)
    market = counts.most_common(1)[0][0]
    settings = sim_settings(sim, store.url, **{**FAST, "trades_page_size": 5})
    code = await asyncio.to_thread(
        backfill_trades, settings, since=since.isoformat(), until=None, min_usd=300.0, markets=[market]
    )
    assert code == EXIT_OK
    expected = {
        fill_key(f)
        for f in sim.world.trades
        if f.taker and f.usd >= 300 and f.condition_id == market and f.timestamp >= start
    }
    assert len(expected) > 5
    assert_exact(store, expected)


async def test_bad_window_is_a_usage_error(sim: SimServer, store: Store) -> None:
    settings = sim_settings(sim, store.url)
    assert backfill_trades(settings, since="1d", until="2d", min_usd=None, markets=[]) == 2
    assert backfill_trades(settings, since="yesterday", until=None, min_usd=None, markets=[]) == 2
