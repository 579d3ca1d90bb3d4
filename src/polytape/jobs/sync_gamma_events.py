"""``sync_gamma_events``: page Gamma's active, not closed events into the store.

Paging is ``GET /events/keyset`` with ``after_cursor`` by default, or the seed's
deprecated ``GET /events?…&order=id&ascending=false&offset=…`` with
``POLYTAPE_GAMMA_PAGING=offset``. Offset pages over a live set skip and repeat, so
events are deduplicated by id across the run. Each page is normalized (pure) and written
in one transaction; a page that still fails after the HTTP layer's retries ends the run
as ``partial`` with every earlier page kept.
"""

from __future__ import annotations

import asyncio

from polytape.errors import ApiError, PayloadError
from polytape.ingest.gamma import SyncTotals, event_pages, store_page
from polytape.ingest.rejects import bad_answer
from polytape.jobs.base import JobContext, JobResult
from polytape.normalize.gamma import NormalizedPage
from polytape.paging import GammaCursor, first_sightings
from polytape.store.metadata import PageWrite, retire_unlisted
from polytape.store.runs import rejected_row


async def run(ctx: JobContext) -> JobResult:
    """Sync every active, not closed Gamma event (and its markets, tokens and tags)."""
    s = ctx.settings
    result = JobResult()
    totals = SyncTotals()
    seen: set[str] = set()
    cursor = GammaCursor(s.gamma_paging)
    pages = event_pages(
        ctx.clients.gamma,
        cursor,
        page_size=s.gamma_page_size,
        filters={"active": True, "closed": False},
        max_pages=s.gamma_max_pages,
    )
    # Page n is written (in a thread) while page n+1 is fetched: the sync waits on the network.
    writing: asyncio.Task[tuple[PageWrite, NormalizedPage]] | None = None
    try:
        async for events, _ in pages:
            fresh, repeats = first_sightings(events, seen)
            totals.repeated_events += repeats
            if writing is not None:
                totals.add(*await writing)
            writing = asyncio.create_task(store_page(ctx, fresh, ctx.clock()))
    except (ApiError, PayloadError) as exc:
        result.partial(f"page {cursor.pages + 1} of /events failed: {exc}")
        kept = bad_answer(exc, "gamma:events")
        if kept is not None:  # the answer that could not be used, kept once
            row = rejected_row(kept.source, kept.reason, kept.raw, ctx.clock())
            await ctx.store.awrite(lambda tx: tx.reject([row]))
    else:
        if not cursor.done:
            result.partial(f"stopped after gamma_max_pages={s.gamma_max_pages} pages; more remain")
    finally:
        if writing is not None:
            totals.add(*await writing)
    if cursor.done and result.status == "ok":
        # Whatever a complete listing of open events left out has closed: the universe drops it.
        now = ctx.clock()
        retired = await ctx.store.awrite(lambda tx: retire_unlisted(tx, seen, now))
        result.details["markets_retired"] = retired
    result.rows_written = totals.rows
    result.details.update(totals.details(), paging=s.gamma_paging)
    return result
