"""The shard planner over real sockets: 2,000 tokens, per-connection faults, universe changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from polytape.jobs.base import run_job
from polytape.jobs.refresh_universe import refresh
from polytape.jobs.sync_gamma_events import run as sync_gamma_events
from polytape.sim import SimServer
from polytape.sim.model import Event, Market
from polytape.sim.world import World
from polytape.store import Store
from tests.support.waiting import stepping, wait_until

from .books_support import live_tracked, mismatched, running_feed, subscribed
from .support import sim_context

FAST = {
    "universe_mode": "all",
    "ws_assets_per_connection": 200,
    "ws_connects_per_second": 40.0,
    "ws_silence_timeout_seconds": 6.0,
    "ws_reconnect_max_seconds": 0.3,
    "ws_ping_interval_seconds": 1.0,
    "book_write_seconds": 0.2,
    "book_resync_minutes": 2.0,
    "gamma_page_size": 500,
}


@pytest.fixture
async def big_sim() -> AsyncIterator[SimServer]:
    """About 1,000 live binary markets (2,000+ tokens), little trade history."""
    world = World(5, n_events=560, n_closed_events=0, history_days=0.02, trades_per_day=50)
    server = SimServer(world)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    store = Store.open(sqlite_url)
    try:
        yield store
    finally:
        store.close()


async def test_2000_tokens_one_connection_cut_one_stalled_one_refusing(
    big_sim: SimServer, sqlite_store: Store
) -> None:
    sim, store = big_sim, sqlite_store
    assert sim.hub is not None
    async with sim_context(sim, store, **FAST) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events)
        await refresh(ctx)
        tokens = await asyncio.to_thread(live_tracked, sim, store)
        assert len(tokens) >= 2000
        poisoned = tokens[777]
        sim.hub.refused_assets.add(poisoned)
        healthy = [t for t in tokens if t != poisoned]
        async with running_feed(ctx, universe_poll_seconds=0.5) as feed:
            async with stepping(sim, every=0.02):
                await wait_until(lambda: len(feed.owner) == len(tokens), 10, "every token placed")
                initial = dict(feed.owner)
                assert len(feed.channels) >= 10
                assert max(len(ch.assets) for ch in feed.channels.values()) <= 200
                refusing = initial[poisoned]
                await wait_until(
                    lambda: any(ch.assets == {poisoned} for ch in feed.channels.values()),
                    60,
                    "the refused token isolated by splits",
                )
                await wait_until(
                    lambda: len(subscribed(sim)) == len(healthy), 30, "the healthy tokens subscribed"
                )
                cut_channel, stall_channel = initial[tokens[10]], initial[tokens[1500]]
                assert len({cut_channel, stall_channel, refusing}) == 3
                cut, stall = sim.hub.connection_of(tokens[10]), sim.hub.connection_of(tokens[1500])
                assert cut is not None and stall is not None
                sim.inject(host="ws", kind="drop", connection=cut.id)
                sim.inject(host="ws", kind="freeze", connection=stall.id)
                await wait_until(lambda: not sim.faults.injections, 30, "the cut and the stall served")
                await wait_until(
                    lambda: (
                        feed.channels[cut_channel].reconnects >= 1
                        and feed.channels[stall_channel].reconnects >= 1
                    ),
                    30,
                    "the cut and stalled connections replaced",
                )
                await asyncio.sleep(2.0)
                reconnected = {name for name, ch in feed.channels.items() if ch.reconnects}
                channels, splits = len(feed.channels), feed.splits
                assert subscribed(sim) == set(healthy)
            took = await wait_until(
                lambda: asyncio.to_thread(lambda: not mismatched(sim, store, healthy)), 30, "exact books"
            )
    untouched = set(initial.values()) - {cut_channel, stall_channel, refusing}
    assert len(untouched) >= 7
    assert not reconnected & untouched, "a healthy connection reconnected"
    assert {cut_channel, stall_channel} <= reconnected
    assert splits >= 7  # 200 assets halved down to the refused one
    print(f"shards: {channels} connections, {splits} splits, books exact {took:.1f}s after the faults")


async def test_universe_changes_move_only_the_changed_tokens(big_sim: SimServer, sqlite_store: Store) -> None:
    sim, store = big_sim, sqlite_store
    assert sim.hub is not None
    held = hold_back(sim.world, 30)
    async with sim_context(sim, store, **FAST) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events)
        await refresh(ctx)
        tokens = set(await asyncio.to_thread(live_tracked, sim, store))
        async with running_feed(ctx, universe_poll_seconds=0.3) as feed, stepping(sim, every=0.02):
            await wait_until(lambda: subscribed(sim) == tokens, 30, "every token subscribed")
            before = {name: set(ch.assets) for name, ch in feed.channels.items()}
            # A connection of a handful of tokens hears so little that the silence watchdog may
            # rightly replace it; the busy ones must never reconnect.
            busy = {name for name, assets in before.items() if len(assets) >= 50}
            # Shrink: some markets close at the venue; one Gamma sync later they are gone.
            closing = sorted({sim.world.tokens[t][0] for t in sorted(tokens)[:40]})
            for cid in closing:
                sim.world.close_market(cid)
            gone = {t for cid in closing for t in sim.world.markets[cid].token_ids}
            await run_job(ctx, "sync-gamma-events", sync_gamma_events)
            await refresh(ctx)
            await wait_until(lambda: subscribed(sim) == tokens - gone, 15, "closed markets unsubscribed")
            after = {name: set(ch.assets) for name, ch in feed.channels.items()}
            for name, assets in before.items():
                assert after.get(name, set()) == assets - gone  # nothing else moved
            assert not any(feed.channels[n].reconnects for n in busy)  # and nobody reconnected
            # Grow: markets held back from the venue are listed; one Gamma sync later they are followed.
            listed = list_again(sim.world, held)
            await run_job(ctx, "sync-gamma-events", sync_gamma_events)
            await refresh(ctx)
            await wait_until(
                lambda: subscribed(sim) == (tokens - gone) | listed, 15, "new markets subscribed"
            )
            grown = {name: set(ch.assets) for name, ch in feed.channels.items()}
            for name, assets in after.items():
                assert grown[name] >= assets  # the old tokens stay where they were
            assert sum(len(a) for a in grown.values()) == len((tokens - gone) | listed)
            assert max(len(a) for a in grown.values()) <= 200
            assert not any(feed.channels[n].reconnects for n in busy)  # still nobody reconnected


Held = list[tuple[Event, list[Market]]]


def hold_back(world: World, n: int) -> Held:
    """Take ``n`` single-market events off the venue (to list them later)."""
    held: Held = []
    for event in list(world.events.values()):
        if len(held) == n:
            break
        if event.neg_risk or event.closed:
            continue
        markets = [world.markets.pop(cid) for cid in event.market_ids]
        for m in markets:
            for tid in m.token_ids:
                world.tokens.pop(tid)
        del world.events[event.id]
        held.append((event, markets))
    return held


def list_again(world: World, held: Held) -> set[str]:
    """Put held-back events on the venue; the token ids of their markets with a book."""
    tokens: set[str] = set()
    for event, markets in held:
        world.events[event.id] = event
        for m in markets:
            world.markets[m.condition_id] = m
            for i, tid in enumerate(m.token_ids):
                world.tokens[tid] = (m.condition_id, i)
                if m.enable_order_book and m.book is not None:
                    tokens.add(tid)
    return tokens


async def test_when_every_connection_fails_none_is_split(sim: SimServer, sqlite_store: Store) -> None:
    """The venue refusing everything is an outage, not a bad shard: halving would only multiply sockets."""
    store = sqlite_store
    assert sim.hub is not None
    knobs = {**FAST, "ws_assets_per_connection": 8, "ws_split_after_failures": 2}
    async with sim_context(sim, store, **knobs) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events)
        await refresh(ctx)
        tokens = set(await asyncio.to_thread(live_tracked, sim, store))
        sim.hub.refused_assets.update(tokens)
        async with running_feed(ctx, universe_poll_seconds=0.3) as feed, stepping(sim, every=0.05):
            await wait_until(lambda: len(feed.owner) == len(tokens), 10, "every token placed")
            planned = len(feed.channels)
            await wait_until(
                lambda: min(ch.failures for ch in feed.channels.values()) >= 4, 30, "every connection failing"
            )
            assert len(feed.channels) == planned and feed.splits == 0
            sim.hub.refused_assets.clear()  # the venue is back
            await wait_until(lambda: subscribed(sim) == tokens, 30, "every token followed again")
            assert len(feed.channels) == planned
