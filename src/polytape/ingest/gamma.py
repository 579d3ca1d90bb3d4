"""Gamma events: the page walk and the per-page normalize + write, for jobs and backfills."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from polytape import metrics
from polytape.clients.gamma import GammaClient
from polytape.ingest.rejects import cap_and_log
from polytape.normalize.gamma import NormalizedPage, normalize_events_page
from polytape.paging import GammaCursor
from polytape.runtime import JobContext
from polytape.store.core import Tx
from polytape.store.metadata import PageWrite, write_events_page

log = structlog.get_logger("polytape.ingest.gamma")


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
    while max_pages is None or fetched < max_pages:
        request = cursor.next_request(page_size)
        if request is None:
            return
        if before_request is not None:
            await before_request()
        next_cursor: str | None = None
        if cursor.paging == "keyset":
            events, next_cursor = await gamma.events_keyset(**request, **filters)
        else:
            events = await gamma.events(**request, **filters)
        cursor.on_page(len(events), next_cursor, page_size=page_size)
        fetched += 1
        yield events, cursor


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


def log_rejects(page: NormalizedPage, total: int) -> None:
    """Log the page's rejected items (capped) and cap what is kept of them."""
    page.rejected = cap_and_log(log, "gamma item rejected", page.rejected, total)


async def store_page(
    ctx: JobContext,
    events: list[dict[str, Any]],
    now: datetime,
    *,
    state: tuple[str, dict[str, Any]] | None = None,
) -> tuple[PageWrite, NormalizedPage]:
    """Normalize one page and write it (with ``state``, if given) in one transaction."""
    page = normalize_events_page(events, now)
    log_rejects(page, len(events))

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
