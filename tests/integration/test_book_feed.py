"""The WebSocket book feed against the simulator over real sockets, on both engines."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from polytape.jobs.base import JobContext, run_job
from polytape.jobs.refresh_universe import ensure_universe, refresh, thresholds
from polytape.jobs.sync_gamma_events import run as sync_gamma_events
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store.schema import markets, orderbooks, rejected_payloads
from polytape.store.universe import add_manual, refresh_tracked, remove_manual, tracked_tokens
from tests.support.stored_books import latest_books
from tests.support.waiting import stepping, wait_until

from .books_support import in_sync, live_tracked, mismatched, running_feed, subscribed
from .support import sim_context

RESYNC_SECONDS = 6.0
FAST = {
    "book_resync_minutes": RESYNC_SECONDS / 60,
    "ws_silence_timeout_seconds": 1.5,
    "ws_reconnect_max_seconds": 0.3,
    "ws_ping_interval_seconds": 0.5,
    "book_write_seconds": 0.2,
}


def quirk_market(sim: SimServer, quirk: str) -> str:
    return next(m.condition_id for m in sim.world.markets.values() if quirk in m.quirks and m.book)


async def track_with_quirks(ctx: JobContext, sim: SimServer) -> None:
    """The auto universe plus the markets whose CLOB neg_risk differs and whose /book has RFC3339 time."""
    await ensure_universe(ctx)
    extra = [quirk_market(sim, "gamma_negrisk_mismatch"), quirk_market(sim, "rfc3339_book_ts")]
    await asyncio.to_thread(add_manual, ctx.store, extra)
    await refresh(ctx)


async def test_stored_books_equal_truth_after_faults(store: Store, sim: SimServer) -> None:
    async with sim_context(sim, store, max_tracked_markets=14, ws_assets_per_connection=10, **FAST) as ctx:
        await track_with_quirks(ctx, sim)
        tokens = await asyncio.to_thread(live_tracked, sim, store)
        async with running_feed(ctx, universe_poll_seconds=0.5) as feed:
            await wait_until(lambda: in_sync(sim, store, tokens), 15, "the first books")
            assert len(feed.channels) >= 3  # 30-odd tokens, 10 per connection
            async with stepping(sim):
                for kind, count in [
                    ("skip_delta", 6),
                    ("bad_hash", 3),
                    ("reorder", 2),
                    ("v1_price_change", 4),
                ]:
                    sim.inject(host="ws", kind=kind, count=count)
                # The world changes without telling anybody: a missed delta and a silent trade.
                target = tokens[0]
                market, index = sim.world.market_of_token(target)
                sim.world.set_book(target, [("0.2", "111")], [("0.8", "222")], emit="none")
                sim.world.plant_trade(market.condition_id, index, "BUY", 3.0, 0.8, emit=False)
                await wait_until(lambda: not sim.faults.injections, 20, "every WS fault served")
                sim.inject(host="ws", kind="drop")
                sim.inject(host="ws", kind="freeze")
                await wait_until(lambda: not sim.faults.injections, 10, "drop and freeze served")
                await wait_until(
                    lambda: sum(c.reconnects for c in feed.channels.values()) >= 2, 10, "reconnects"
                )
                # deferred checks compare a book with the newest hash only, and a reconnect's
                # snapshots may heal a skipped delta first: not every fault is a mismatch
                await wait_until(lambda: feed.keeper.stats.hash_mismatches >= 1, 10, "hash mismatches")
                await sim.step(5)
            took = await wait_until(lambda: in_sync(sim, store, tokens), RESYNC_SECONDS + 4, "healed books")
            assert took <= RESYNC_SECONDS + 4
            assert feed.healer.performed["hash_mismatch"] >= 1
        assert await asyncio.to_thread(mismatched, sim, store, tokens) == []
        rows = store.fetch_all(sa.select(orderbooks).where(orderbooks.c.token_id.in_(tokens)))
        assert len(rows) == len(tokens)
        assert {r["hash_status"] for r in rows} == {"verified"}
        assert {r["source"] for r in rows} <= {"ws", "rest"}
        for row in rows:
            m, i = sim.world.market_of_token(row["token_id"])
            assert row["condition_id"] == m.condition_id
            assert row["neg_risk"] is m.neg_risk_clob
            assert row["tick_size"] == float(m.book.tick_size if m.book else "nan")
            assert row["last_trade_price"] == (
                float(m.last_trade_price[i]) if m.last_trade_price[i] else None
            )
        mismatch_cid = quirk_market(sim, "gamma_negrisk_mismatch")
        (stored,) = store.fetch_all(sa.select(markets).where(markets.c.condition_id == mismatch_cid))
        assert stored["neg_risk"] is True and stored["neg_risk_source"] == "clob"
        health = store.get_state("ws_feed")
        assert health["tokens_subscribed"] == len(tracked_tokens(store))
        assert health["hash_mismatches"] >= 1 and health["reconnects"] >= 2


async def test_universe_changes_subscribe_and_unsubscribe(store: Store, sim: SimServer) -> None:
    nobody = {"min_liquidity": 1e15, "min_volume": 1e15, "min_oi": 1e15}  # manual overrides only
    async with sim_context(sim, store, ws_assets_per_connection=4, **FAST, **nobody) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events)
        live = [m.condition_id for m in sim.world.markets.values() if m.book is not None and not m.closed]
        a, b, c, d, e = live[:5]
        await asyncio.to_thread(add_manual, store, [a, b, c])
        await refresh(ctx)

        def follows() -> bool:
            wanted = set(tracked_tokens(store))
            assert sim.hub is not None
            return subscribed(sim) == wanted and all(len(conn.assets) <= 4 for conn in sim.hub.connections)

        async with running_feed(ctx, universe_poll_seconds=0.3) as feed:
            await wait_until(follows, 10, "the first subscription")
            assert len(feed.channels) == 2  # 6 tokens, 4 per connection
            tokens_a = set(sim.world.markets[a].token_ids)
            await wait_until(lambda: in_sync(sim, store, sorted(tokens_a)), 10, "books of a")

            # In this process: refresh-universe calls the feed's callback.
            await asyncio.to_thread(remove_manual, store, [a])
            await asyncio.to_thread(add_manual, store, [d])
            await refresh(ctx)
            await wait_until(follows, 10, "a out, d in")
            assert not tokens_a & subscribed(sim)
            assert not tokens_a & set(feed.registry.conditions)
            tokens_d = sorted(sim.world.markets[d].token_ids)
            await wait_until(lambda: in_sync(sim, store, tokens_d), 10, "books of d")
            await wait_until(lambda: not latest_books(store, tokens_a), 5, "books of a deleted")

            # Another process refreshes: only the universe version in sync_state moves.
            await asyncio.to_thread(remove_manual, store, [b])
            await asyncio.to_thread(add_manual, store, [e])
            await asyncio.to_thread(refresh_tracked, store, thresholds(ctx), ctx.clock())
            await wait_until(follows, 10, "b out, e in (polled)")
            assert set(sim.world.markets[e].token_ids) <= subscribed(sim)


async def test_malformed_and_unknown_messages_are_survived_and_recorded(store: Store, sim: SimServer) -> None:
    async with sim_context(sim, store, max_tracked_markets=6, **FAST) as ctx:
        await ensure_universe(ctx)
        tokens = await asyncio.to_thread(live_tracked, sim, store)
        async with running_feed(ctx) as feed:
            await wait_until(lambda: in_sync(sim, store, tokens), 10, "the first books")
            sim.inject(host="ws", kind="malformed", count=3)
            sim.inject(host="ws", kind="unknown_event", count=2)
            async with stepping(sim):
                await wait_until(lambda: not sim.faults.injections, 20, "faults served")
                seen = feed.keeper.stats.messages_total
                await wait_until(
                    lambda: feed.keeper.stats.messages_total > seen + 5, 10, "messages after faults"
                )
            await wait_until(lambda: in_sync(sim, store, tokens), RESYNC_SECONDS + 4, "books after faults")
            stats = feed.keeper.stats
            assert stats.rejected["malformed_json"] == 3
            assert stats.rejected["unknown_event:sim_mystery"] == 2
        rows = store.fetch_all(sa.select(rejected_payloads).where(rejected_payloads.c.source == "clob.ws"))
        reasons = sorted(r["reason"].split(":")[0] for r in rows)
        assert reasons.count("malformed_json") == 3
        assert sum("unknown event_type 'sim_mystery'" in r["reason"] for r in rows) == 2
        assert all(r["raw"] for r in rows)
        health = store.get_state("ws_feed")
        assert health["rejected"] == {"malformed_json": 3, "unknown_event:sim_mystery": 2}
