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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from polytape import metrics
from polytape.clients.gamma import GammaClient
from polytape.errors import ApiError, PayloadError
from polytape.jobs.base import JobContext, JobResult
from polytape.normalize.gamma import NormalizedPage, normalize_events_page
from polytape.store.core import Tx
from polytape.store.metadata import PageWrite, write_events_page

log = structlog.get_logger("polytape.jobs.sync_gamma_events")


@dataclass
class GammaCursor:
    """Where a paging run stands: the next page's cursor (keyset) or offset, and pages done."""

    paging: str
    after_cursor: str | None = None
    offset: int = 0
    pages: int = 0
    done: bool = False

    def as_state(self) -> dict[str, Any]:
        """JSON for ``sync_state`` (committed with the page it follows)."""
        return {
            "paging": self.paging,
            "after_cursor": self.after_cursor,
            "offset": self.offset,
            "pages": self.pages,
            "done": self.done,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None, paging: str) -> GammaCursor:
        """Resume from a stored state of the same paging mode, else start over."""
        if not state or state.get("paging") != paging or state.get("done"):
            return cls(paging)
        return cls(
            paging,
            after_cursor=state.get("after_cursor"),
            offset=int(state.get("offset") or 0),
            pages=int(state.get("pages") or 0),
        )


async def event_pages(
    gamma: GammaClient,
    cursor: GammaCursor,
    *,
    page_size: int,
    filters: Mapping[str, Any],
    max_pages: int | None = None,
    before_request: Callable[[], Any] | None = None,
) -> AsyncIterator[tuple[list[dict[str, Any]], GammaCursor]]:
    """Yield each page of events with the cursor *after* it, until the pages run out.

    ``cursor`` is advanced in place (``done`` once the last page is seen). Stops after
    ``max_pages`` pages of this call, with ``done`` still false. ``before_request`` is
    awaited before each request (pacing).
    """
    fetched = 0
    while not cursor.done and (max_pages is None or fetched < max_pages):
        if before_request is not None:
            await before_request()
        if cursor.paging == "keyset":
            events, next_cursor = await gamma.events_keyset(
                limit=page_size, after_cursor=cursor.after_cursor, **filters
            )
            cursor.after_cursor, cursor.done = next_cursor, next_cursor is None or not events
        else:
            events = await gamma.events(
                limit=page_size, offset=cursor.offset, order="id", ascending=False, **filters
            )
            cursor.offset += len(events)
            cursor.done = len(events) < page_size
        cursor.pages += 1
        fetched += 1
        yield events, cursor


def first_sightings(events: list[dict[str, Any]], seen: set[str]) -> tuple[list[dict[str, Any]], int]:
    """Events whose id was not seen earlier in the run (items without an id pass through)."""
    fresh: list[dict[str, Any]] = []
    repeats = 0
    for event in events:
        event_id = str(event.get("id")) if isinstance(event, dict) and event.get("id") is not None else None
        if event_id is not None:
            if event_id in seen:
                repeats += 1
                continue
            seen.add(event_id)
        fresh.append(event)
    return fresh, repeats


@dataclass
class SyncTotals:
    """Counters of a paging run, reported in ``job_runs.details``."""

    pages: int = 0
    events: int = 0
    markets: int = 0
    tokens: int = 0
    new_events: int = 0
    new_markets: int = 0
    rejected: int = 0
    skipped_undeployed: int = 0
    repeated_events: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, written: PageWrite, page: NormalizedPage) -> None:
        self.pages += 1
        self.events += written.events
        self.markets += written.markets
        self.tokens += written.tokens
        self.new_events += written.new_events
        self.new_markets += written.new_markets
        self.rejected += written.rejected
        self.skipped_undeployed += page.skipped
        self.rows += written.rows

    def details(self) -> dict[str, int]:
        names = ("pages", "events", "markets", "tokens", "new_events", "new_markets", "rejected")
        out = {name: int(getattr(self, name)) for name in names}
        out["skipped_undeployed"] = self.skipped_undeployed
        out["repeated_events"] = self.repeated_events
        return out


def log_rejects(page: NormalizedPage) -> None:
    """One clear line per rejected item, and the metric."""
    for item in page.rejected:
        log.warning("gamma item rejected", source=item.source, reason=item.reason)
        metrics.REJECTED_PAYLOADS.labels(source=item.source).inc()


async def store_page(
    ctx: JobContext,
    events: list[dict[str, Any]],
    now: datetime,
    *,
    state: tuple[str, dict[str, Any]] | None = None,
) -> tuple[PageWrite, NormalizedPage]:
    """Normalize one page and write it (with ``state``, if given) in one transaction."""
    page = normalize_events_page(events, now)
    log_rejects(page)

    def write(tx: Tx) -> PageWrite:
        written = write_events_page(tx, page, now)
        if state is not None:
            tx.set_state(state[0], state[1], now)
        return written

    written = await ctx.store.awrite(write)
    for table, n in (
        ("events", written.events),
        ("markets", written.markets),
        ("market_tokens", written.tokens),
    ):
        metrics.ROWS_WRITTEN.labels(table=table).inc(n)
    return written, page


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
    else:
        if not cursor.done:
            result.partial(f"stopped after gamma_max_pages={s.gamma_max_pages} pages; more remain")
    finally:
        if writing is not None:
            totals.add(*await writing)
    result.rows_written = totals.rows
    result.details.update(totals.details(), paging=s.gamma_paging)
    return result
