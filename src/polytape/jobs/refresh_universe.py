"""``refresh-universe``: choose the tracked markets the WebSocket feed and book/OI jobs follow.

Selection, scoring and the replace-auto-rows rule live in :mod:`polytape.store.universe`.
After a refresh that changed the universe, ``ctx.runtime.on_universe_change`` (if set)
is called with ``(added_token_ids, removed_token_ids)``; a feed in another process
watches the ``sync_state`` key ``"universe"`` instead.
"""

from __future__ import annotations

import asyncio

import structlog

from polytape.jobs import sync_gamma_events
from polytape.jobs.base import JobContext, JobFn, JobResult, run_job
from polytape.store.locks import AdvisoryLock
from polytape.store.schema import markets, tracked_markets
from polytape.store.universe import Thresholds, UniverseChange, refresh_tracked

log = structlog.get_logger("polytape.jobs.refresh_universe")


def thresholds(ctx: JobContext) -> Thresholds:
    """The universe knobs from the settings."""
    return Thresholds.from_settings(ctx.settings)


async def refresh(ctx: JobContext) -> UniverseChange:
    """Refresh the universe and tell the live feed (if any) what entered and left."""
    change = await asyncio.to_thread(refresh_tracked, ctx.store, thresholds(ctx), ctx.clock())
    callback = ctx.runtime.on_universe_change
    if change.changed and callback is not None:
        outcome = callback(set(change.tokens_added), set(change.tokens_removed))
        if asyncio.iscoroutine(outcome):
            await outcome
    return change


async def run(ctx: JobContext) -> JobResult:
    """One refresh, reported in ``job_runs``."""
    change = await refresh(ctx)
    result = JobResult(rows_written=change.auto)
    result.details.update(
        version=change.version,
        markets=change.markets,
        tokens=change.tokens,
        manual=change.manual,
        auto=change.auto,
        markets_added=len(change.markets_added),
        markets_removed=len(change.markets_removed),
        tokens_added=len(change.tokens_added),
        tokens_removed=len(change.tokens_removed),
    )
    if ctx.settings.universe_mode == "ranked" and change.manual > ctx.settings.max_tracked_markets:
        result.partial(
            f"{change.manual} manual overrides exceed max_tracked_markets="
            f"{ctx.settings.max_tracked_markets}; no room for auto-selected markets"
        )
    return result


async def ensure_universe(ctx: JobContext) -> None:
    """Refresh the universe when ``tracked_markets`` is empty (first Gamma sync too, if needed).

    The OI and order-book jobs call this first, so ``polytape job sync-orderbooks`` on a
    fresh database has something to follow.
    """
    if await asyncio.to_thread(ctx.store.count, tracked_markets):
        return
    if not await asyncio.to_thread(ctx.store.count, markets):
        await _run_locked(ctx, "sync-gamma-events", sync_gamma_events.run)
    await _run_locked(ctx, "refresh-universe", run)


async def _run_locked(ctx: JobContext, name: str, fn: JobFn) -> None:
    """Run ``name`` under its job lock; when another worker holds it, that worker is doing it."""
    lock = AdvisoryLock(ctx.store, f"job:{name}")
    if not await asyncio.to_thread(lock.try_acquire):
        log.info("universe bootstrap left to the worker running it", job=name)
        return
    try:
        await run_job(ctx, name, fn)
    finally:
        await asyncio.to_thread(lock.release)
