"""``polytape backfill markets``: page Gamma events historically into the store.

Pages ``/events/keyset`` (or the legacy offset list, per ``POLYTAPE_GAMMA_PAGING``) with
``closed=true`` (``--open`` for open ones), paced at ``POLYTAPE_BACKFILL_REQUESTS_PER_SECOND``,
with a progress bar. The cursor is stored in ``sync_state`` in the same transaction as
each page's rows, so an interrupted backfill (error, Ctrl-C, crash) resumes where it
stopped when the same command runs again; a finished one starts over (idempotently).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from polytape.backfill import Pacer, Reporter, SilentReporter
from polytape.errors import ApiError, BackfillFailed, PayloadError
from polytape.ingest.gamma import SyncTotals, event_pages, store_page
from polytape.normalize.gamma import GammaPayloadError, parse_gamma_datetime
from polytape.paging import GammaCursor, first_sightings
from polytape.runtime import JobContext


def state_key(closed: bool, since: str | None, paging: str) -> str:
    """The ``sync_state`` key of one backfill (its cursor); the same command resumes it."""
    return f"backfill:markets:{'closed' if closed else 'open'}:{since or 'all'}:{paging}"


def ends_after(event: Any, since: datetime | None) -> bool:
    """Keep events ending at/after ``since`` (or without a usable end date)."""
    if since is None or not isinstance(event, dict):
        return True
    try:
        end = parse_gamma_datetime(event.get("endDate"))
    except GammaPayloadError:
        return True  # the normalizer rejects it with the reason
    return end is None or end >= since


async def run_backfill(
    ctx: JobContext,
    *,
    closed: bool,
    since: str | None,
    since_at: datetime | None,
    report: Reporter | None = None,
) -> SyncTotals:
    """The backfill on an open context (see the module notes); returns what it did.

    Each page commits with its cursor, so cancelling this coroutine (Ctrl-C) loses at
    most the page in flight, and the next run resumes after the last stored page. A page
    that fails raises :class:`BackfillFailed` (the pages before it stay).
    """
    report = report or SilentReporter()
    settings = ctx.settings
    key = state_key(closed, since, settings.gamma_paging)
    filters: dict[str, Any] = {"closed": closed}
    if since_at is not None:
        filters["end_date_min"] = since_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    totals = SyncTotals()
    seen: set[str] = set()
    cursor = GammaCursor.from_state(await asyncio.to_thread(ctx.store.get_state, key), settings.gamma_paging)
    if cursor.pages:
        report.note(f"resuming after page {cursor.pages} ({key})")
    pages = event_pages(
        ctx.clients.gamma,
        cursor,
        page_size=settings.gamma_page_size,
        filters=filters,
        before_request=Pacer(settings.backfill_requests_per_second).wait,
    )
    report.begin(None, 0)
    try:
        async for events, after in pages:
            fresh, repeats = first_sightings([e for e in events if ends_after(e, since_at)], seen)
            totals.repeated_events += repeats
            written, page = await store_page(ctx, fresh, ctx.clock(), state=(key, after.as_state()))
            totals.add(written, page)
            report.progress(totals.events, stats(totals))
    except (ApiError, PayloadError) as exc:
        raise BackfillFailed(
            f"page {cursor.pages + 1} failed: {exc}; {totals.pages} page(s) stored this run; "
            "run the same command again to resume"
        ) from exc
    return totals


def stats(t: SyncTotals) -> str:
    """What a backfill did, in words."""
    return (
        f"{t.pages} pages, {t.events} events, {t.markets} markets, {t.tokens} tokens, "
        f"{t.new_markets} new markets, {t.rejected} rejected"
    )
