"""Helpers for the order-book integration tests: truth vs store, a running feed, a stepping world."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from polytape.bookfeed import BookFeed
from polytape.jobs.base import JobContext
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store.universe import tracked_tokens
from tests.support.stored_books import latest_books
from tests.support.waiting import stepping as stepping  # re-exported: older imports keep working
from tests.support.waiting import wait_until as wait_until  # re-exported likewise

Levels = tuple[list[tuple[float, float]], list[tuple[float, float]]]


def truth_levels(sim: SimServer, token_id: str, books: dict[str, Any] | None = None) -> Levels | None:
    """The simulator's current book of a token: bids high→low, asks low→high (None: no book).

    ``books``: ``sim.world.books`` taken once by a caller that looks at many tokens.
    """
    book = (sim.world.books if books is None else books).get(token_id)
    if book is None:
        return None
    bids = sorted(((float(lvl["price"]), float(lvl["size"])) for lvl in book["bids"]), reverse=True)
    asks = sorted((float(lvl["price"]), float(lvl["size"])) for lvl in book["asks"])
    return bids, asks


def mismatched(sim: SimServer, store: Store, tokens: list[str]) -> list[str]:
    """Tokens whose stored levels differ from the simulator's truth (level by level)."""
    stored = latest_books(store, tokens)
    books = sim.world.books
    bad = []
    for token_id in tokens:
        truth = truth_levels(sim, token_id, books)
        book = stored.get(token_id)
        if truth is None:
            continue
        if book is None or (book.bids, book.asks) != truth:
            bad.append(token_id)
    return bad


async def in_sync(sim: SimServer, store: Store, tokens: list[str]) -> bool:
    """True when every token's stored book equals the truth."""
    return not await asyncio.to_thread(mismatched, sim, store, tokens)


@asynccontextmanager
async def running_feed(ctx: JobContext, **kw: Any) -> AsyncIterator[BookFeed]:
    """A :class:`BookFeed` on ``ctx`` running in the background, stopped (and flushed) after."""
    feed = BookFeed(ctx.settings, ctx.store, ctx.clients.clob, runtime=ctx.runtime, clock=ctx.clock, **kw)
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        await feed.stop()
        await asyncio.wait_for(task, 10)


def live_tracked(sim: SimServer, store: Store) -> list[str]:
    """Tracked tokens that have a book in the simulator."""
    books = sim.world.books
    return sorted(t for t in tracked_tokens(store) if t in books)


def subscribed(sim: SimServer) -> set[str]:
    """Every asset some simulator connection is subscribed to."""
    assert sim.hub is not None
    return {a for conn in sim.hub.connections for a in conn.assets}
