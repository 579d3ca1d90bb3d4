"""The simulator's truth about trades, keyed the way polytape keys them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa

from polytape.normalize.trades import dedupe_key
from polytape.sim import SimServer, World
from polytape.sim.model import Fill
from polytape.store import Store
from polytape.store import schema as s


def fill_key(fill: Fill) -> str:
    """The dedupe key polytape gives this fill."""
    return dedupe_key(
        transaction_hash=fill.transaction_hash,
        wallet=fill.proxy_wallet,
        condition_id=fill.condition_id,
        token_id=fill.asset,
        side=fill.side,
        size=fill.size,
        price=fill.price,
        trade_ts=fill.timestamp,
    )


def truth_keys(world: World, *, min_usd: float | None, since: int, until: int | None = None) -> set[str]:
    """Keys of the taker fills the Data API serves with ``filterType=CASH`` ≥ ``min_usd``."""
    return {
        fill_key(f)
        for f in world.trades
        if f.taker
        and (min_usd is None or f.usd >= min_usd)
        and f.timestamp >= since
        and (until is None or f.timestamp <= until)
    }


def stored_keys(store: Store) -> list[str]:
    """Every stored dedupe key (a list: duplicates would show)."""
    return [str(r["dedupe_key"]) for r in store.fetch_all(sa.select(s.trades.c.dedupe_key))]


@contextlib.asynccontextmanager
async def growing(sim: SimServer, interval: float = 0.005) -> AsyncIterator[None]:
    """Step the world (new trades, large ones included) in the background while the body runs."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            await sim.step()
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        await task
