"""``sync-orderbooks`` (the polling fallback) against the simulator, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from polytape.clients.clob import ClobClient
from polytape.jobs import sync_orderbooks
from polytape.jobs.base import JobContext, run_job
from polytape.jobs.refresh_universe import ensure_universe, refresh
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store.schema import markets, orderbooks
from polytape.store.universe import add_manual
from tests.support.stored_books import latest_books, stored_book
from tests.support.waiting import stepping, wait_until

from .books_support import in_sync, live_tracked, mismatched, running_feed
from .support import sim_context


def quirk_market(sim: SimServer, quirk: str, *, with_book: bool = True) -> str:
    return next(
        m.condition_id
        for m in sim.world.markets.values()
        if quirk in m.quirks and (m.book is not None) == with_book and not m.closed
    )


async def track_quirks(ctx: JobContext, sim: SimServer) -> list[str]:
    await ensure_universe(ctx)
    extra = [
        quirk_market(sim, "gamma_negrisk_mismatch"),
        quirk_market(sim, "rfc3339_book_ts"),
        quirk_market(sim, "no_order_book", with_book=False),
    ]
    await asyncio.to_thread(add_manual, ctx.store, extra)
    await refresh(ctx)
    return extra


async def test_polling_stores_the_truth(store: Store, sim: SimServer) -> None:
    async with sim_context(sim, store, max_tracked_markets=10, ws_enabled=False) as ctx:
        _, rfc_cid, bookless_cid = await track_quirks(ctx, sim)
        result = await run_job(ctx, "sync-orderbooks", sync_orderbooks.run)
        tokens = await asyncio.to_thread(live_tracked, sim, store)
        assert result.status == "ok", result.details
        assert result.details["books"] == len(tokens)
        assert result.details["no_book"] == 2  # both tokens of the market without a book
        assert result.details["hash_mismatches"] == 0
        assert sim.count("clob", "/books") == 1 and sim.count("clob", "/book") == 0
        assert await asyncio.to_thread(mismatched, sim, store, tokens) == []
        rows = store.fetch_all(sa.select(orderbooks))
        assert {r["token_id"] for r in rows} == set(tokens)
        assert {r["source"] for r in rows} == {"rest"} and {r["hash_status"] for r in rows} == {"verified"}
        rfc_token = sim.world.markets[rfc_cid].token_ids[0]
        book = stored_book(store, rfc_token)
        assert book is not None
        truth_ms = sim.world.markets[rfc_cid].book.timestamp_ms  # type: ignore[union-attr]
        assert round(book.header["book_ts"].timestamp() * 1000) == truth_ms  # RFC3339 parsed to UTC
        clob_rows = store.fetch_all(sa.select(markets).where(markets.c.neg_risk_source == "clob"))
        by_cid = {r["condition_id"]: r["neg_risk"] for r in clob_rows}
        assert by_cid[quirk_market(sim, "gamma_negrisk_mismatch")] is True
        for cid, neg_risk in by_cid.items():
            assert neg_risk is sim.world.markets[cid].neg_risk_clob
        assert bookless_cid not in by_cid

        # A rerun after the world moved replaces the books: still exactly the truth.
        await sim.step(30)
        again = await run_job(ctx, "sync-orderbooks", sync_orderbooks.run)
        assert again.status == "ok"
        assert await asyncio.to_thread(mismatched, sim, store, tokens) == []


async def test_polling_gives_the_same_books_as_the_ws_path(store: Store, sim: SimServer) -> None:
    async with sim_context(sim, store, max_tracked_markets=10, book_write_seconds=0.2) as ctx:
        await track_quirks(ctx, sim)
        tokens = await asyncio.to_thread(live_tracked, sim, store)
        async with running_feed(ctx) as feed:
            async with stepping(sim):
                await wait_until(lambda: feed.keeper.stats.by_type["price_change"] > 20, 10, "some deltas")
            await wait_until(lambda: in_sync(sim, store, tokens), 10, "the WS books")
        from_ws = {t: (b.bids, b.asks) for t, b in latest_books(store, tokens).items()}
        result = await run_job(ctx, "sync-orderbooks", sync_orderbooks.run)
        assert result.status == "ok"
        from_rest = {t: (b.bids, b.asks) for t, b in latest_books(store, tokens).items()}
        assert from_rest == from_ws
        assert len(from_ws) == len(tokens)


class RefusingBooks(ClobClient):
    """A CLOB client whose ``POST /books`` goes to a path the server refuses (404)."""

    async def _books_batch(self, token_ids: Sequence[str]) -> list[dict[str, Any]]:
        await self.http.post_json("/books-refused", [{"token_id": t} for t in token_ids])
        raise AssertionError("the server should have refused")


async def test_falls_back_to_get_book_when_books_is_refused(store: Store, sim: SimServer) -> None:
    async with sim_context(sim, store, max_tracked_markets=5, books_batch_size=4) as ctx:
        await ensure_universe(ctx)
        ctx.clients.clob = RefusingBooks(ctx.clients.clob.http)
        result = await run_job(ctx, "sync-orderbooks", sync_orderbooks.run)
        tokens = await asyncio.to_thread(live_tracked, sim, store)
        assert result.status == "ok", result.details
        assert result.details["fallback_batches"] == (len(tokens) + 3) // 4
        assert sim.count("clob", "/book") == len(tokens)
        assert await asyncio.to_thread(mismatched, sim, store, tokens) == []
