"""``polytape backfill markets``: page Gamma events historically into the store.

Pages ``/events/keyset`` (or the legacy offset list, per ``POLYTAPE_GAMMA_PAGING``) with
``closed=true`` (``--open`` for open ones), paced at ``POLYTAPE_BACKFILL_REQUESTS_PER_SECOND``,
with a progress bar. The cursor is stored in ``sync_state`` in the same transaction as
each page's rows, so an interrupted backfill (error, Ctrl-C, crash) resumes where it
stopped when the same command runs again; a finished one starts over (idempotently).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from polytape.backfill import Pacer, interruptible, parse_since
from polytape.config import Settings
from polytape.errors import ApiError, PayloadError
from polytape.ingest.gamma import SyncTotals, event_pages, store_page
from polytape.normalize.gamma import GammaPayloadError, parse_gamma_datetime
from polytape.paging import GammaCursor, first_sightings
from polytape.runtime import JobContext

EXIT_OK, EXIT_FAIL = 0, 1


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


def backfill_markets(settings: Settings, *, closed: bool, since: str | None) -> int:
    """Run the backfill; returns the exit code (0 done, 1 failed, 130 interrupted)."""
    from polytape.app import job_context

    console = Console(stderr=True)
    since_at = parse_since(since, datetime.now(UTC)) if since else None

    async def main() -> int:
        async with job_context(settings) as ctx:
            return await run_backfill(ctx, closed=closed, since=since, since_at=since_at, console=console)

    return interruptible(main, console)


async def run_backfill(
    ctx: JobContext,
    *,
    closed: bool,
    since: str | None,
    since_at: datetime | None,
    console: Console,
) -> int:
    """The backfill on an open context; see :func:`backfill_markets`.

    Each page commits with its cursor, so cancelling this coroutine (Ctrl-C) loses at
    most the page in flight, and the next run resumes after the last stored page.
    """
    settings = ctx.settings
    key = state_key(closed, since, settings.gamma_paging)
    filters: dict[str, Any] = {"closed": closed}
    if since_at is not None:
        filters["end_date_min"] = since_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    totals = SyncTotals()
    seen: set[str] = set()
    cursor = GammaCursor.from_state(await asyncio.to_thread(ctx.store.get_state, key), settings.gamma_paging)
    if cursor.pages:
        console.print(f"resuming after page {cursor.pages} ({key})")
    pages = event_pages(
        ctx.clients.gamma,
        cursor,
        page_size=settings.gamma_page_size,
        filters=filters,
        before_request=Pacer(settings.backfill_requests_per_second).wait,
    )
    with _progress(console) as progress:
        task = progress.add_task("events", total=None, stats="")
        try:
            async for events, after in pages:
                fresh, repeats = first_sightings([e for e in events if ends_after(e, since_at)], seen)
                totals.repeated_events += repeats
                written, page = await store_page(ctx, fresh, ctx.clock(), state=(key, after.as_state()))
                totals.add(written, page)
                progress.update(task, advance=written.events, stats=_stats(totals))
        except (ApiError, PayloadError) as exc:
            console.print(
                f"[bold red]error:[/] page {cursor.pages + 1} failed: {exc}; "
                f"{totals.pages} page(s) stored this run; run the same command again to resume",
                highlight=False,
            )
            return EXIT_FAIL
    console.print(f"backfill markets done: {_stats(totals)}", highlight=False)
    return EXIT_OK


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]backfill markets[/]"),
        BarColumn(),
        TextColumn("{task.completed} events"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _stats(t: SyncTotals) -> str:
    return (
        f"{t.pages} pages, {t.events} events, {t.markets} markets, {t.tokens} tokens, "
        f"{t.new_markets} new markets, {t.rejected} rejected"
    )
