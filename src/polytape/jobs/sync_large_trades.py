"""``sync-large-trades``: a near-real-time feed of large taker prints, as a rolling window.

Each run pages the trade feed newest first (``takerOnly``, ``CASH`` ≥
``large_trade_usd_threshold``) down to ``watermark - safety_window`` (the first run: back
``trades_initial_lookback_hours``), at most ``trades_max_pages`` pages, inserting every page
idempotently by the fill's dedupe key (late trades inside the safety window are caught by
the overlap; repeats are ignored).

- v1 (``/trades``, offset paging): the API refuses offsets past its cap (live: 3,000; a 400
  ``max historical activity offset … exceeded``). At the cap (from the setting or the
  error) the window narrows to ``end = oldest trade seen`` and paging restarts at offset 0;
  each ``start``/``end`` window has its own offset budget. More than a cap's worth of
  trades in one second cannot be reached at all: that second becomes a gap.
- v2 (``/v2/trades``, ``POLYTAPE_TRADES_FEED=v2``): keyset cursor, no offset cap; a
  repeated cursor ends the run (lessons.md #7).

What a run could not cover (page budget spent, a single overfull second) is a gap:
listed in ``details["gaps"]`` as ``[[start, end], …]`` epoch seconds and merged into the
``sync_state`` key ``"trades:gaps"`` for ``polytape backfill trades``. The watermark moves
(in the same transaction as the run's last page) only once the window down to the safety
margin is stored or recorded as a gap; a run that fails midway keeps its pages but leaves
the watermark, so the next run covers the whole window again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from polytape import metrics
from polytape.clients.data_api import DataApiClient
from polytape.errors import ApiError, OffsetCapExceeded, PayloadError
from polytape.jobs.base import JobContext, JobResult
from polytape.normalize.trades import (
    REJECT_SOURCE,
    SOURCE_V1,
    SOURCE_V2,
    Feed,
    TradePayloadError,
    TradesPage,
    normalize_trades,
    parse_trade_ts,
)
from polytape.store.core import Tx
from polytape.store.runs import rejected_row
from polytape.store.trades import add_gaps, load_watermark, set_watermark, store_trades_page

log = structlog.get_logger("polytape.jobs.sync_large_trades")

PAYLOAD_RETRIES = 2  # a page that is not JSON is asked for again this many times
BeforeRequest = Callable[[], Awaitable[None]]


async def _no_wait() -> None:
    return None


def page_timestamps(items: Sequence[Any], now: datetime) -> list[int]:
    """Epoch seconds of every item with a usable ``timestamp``, valid trade or not: how deep
    a page reached must not depend on whether its rows were valid (both feeds name it alike)."""
    stamps: list[int] = []
    for item in items:
        if isinstance(item, dict):
            try:
                stamps.append(parse_trade_ts(item.get("timestamp"), now))
            except TradePayloadError:
                continue
    return stamps


class TradePager:
    """Shared state of a newest-first walk down to ``floor``: pages, range seen, gaps."""

    def __init__(self, *, floor: int, page_size: int, max_pages: int | None) -> None:
        self.floor = floor
        self.page_size = page_size
        self.max_pages = max_pages
        self.pages = 0
        self.newest: int | None = None
        self.oldest: int | None = None
        self.complete = False
        self.gaps: list[tuple[int, int]] = []
        self.bad_answers: list[str] = []

    @property
    def exhausted(self) -> bool:
        """The page budget is spent."""
        return self.max_pages is not None and self.pages >= self.max_pages

    @property
    def done(self) -> bool:
        """No further page will be fetched."""
        return self.complete or self.exhausted

    def _seen(self, stamps: Sequence[int]) -> None:
        if stamps:
            top, bottom = max(stamps), min(stamps)
            self.newest = top if self.newest is None else max(self.newest, top)
            self.oldest = bottom if self.oldest is None else min(self.oldest, bottom)

    async def _fetch(self, call: Callable[[], Awaitable[Any]], before: BeforeRequest) -> Any:
        """One request; an answer that is not JSON is noted and asked for again."""
        for attempt in range(PAYLOAD_RETRIES + 1):
            await before()
            try:
                return await call()
            except PayloadError as exc:
                self.bad_answers.append(str(exc))
                log.warning("trades page is not valid JSON", attempt=attempt + 1, error=str(exc)[:200])
                if attempt == PAYLOAD_RETRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


class OffsetPager(TradePager):
    """``/trades`` over ``[floor, hi]`` by offset, narrowing ``hi`` by time at the offset cap."""

    def __init__(
        self,
        data: DataApiClient,
        *,
        floor: int,
        hi: int | None,
        page_size: int,
        offset_cap: int,
        max_pages: int | None,
        filter_amount: float | None,
        markets: Sequence[str] | None = None,
        before_request: BeforeRequest = _no_wait,
        now: datetime,
    ) -> None:
        super().__init__(floor=floor, page_size=page_size, max_pages=max_pages)
        self.data = data
        self.hi = hi
        self.offset = 0
        self.offset_cap = offset_cap
        self.filter_amount = filter_amount
        self.markets = list(markets) if markets else None
        self.before_request = before_request
        self.now = now
        self.window_oldest: int | None = None
        self.narrowings = 0
        self.cap_refusals = 0

    @property
    def resume_hi(self) -> int | None:
        """Upper bound still to cover: every trade newer than it (down from the start) is paged."""
        return self.window_oldest if self.window_oldest is not None else self.hi

    async def pages_iter(self) -> AsyncIterator[list[Any]]:
        """Raw pages, newest first; state (``complete``, ``gaps``, …) is updated before each yield."""
        while not self.done:
            if self.offset >= self.offset_cap:
                self._narrow()
                continue
            try:
                items = await self._fetch(self._request, self.before_request)
            except OffsetCapExceeded:
                self.cap_refusals += 1
                log.info("offset cap reached; narrowing the window", offset=self.offset, end=self.hi)
                self._narrow()
                continue
            self.pages += 1
            stamps = page_timestamps(items, self.now)
            self._seen(stamps)
            if stamps:
                low = min(stamps)
                self.window_oldest = low if self.window_oldest is None else min(self.window_oldest, low)
            if len(items) < self.page_size or (stamps and min(stamps) < self.floor):
                self.complete = True
            else:
                self.offset += len(items)
            yield items

    async def _request(self) -> list[Any]:
        amount = self.filter_amount
        return await self.data.trades(
            limit=self.page_size,
            offset=self.offset,
            taker_only=True,
            filter_type="CASH" if amount is not None else None,
            filter_amount=amount,
            market=self.markets,
            start=self.floor,
            end=self.hi,
        )

    def _narrow(self) -> None:
        """Continue below the oldest trade seen, in a new window with its own offset budget."""
        oldest = self.window_oldest
        self.narrowings += 1
        self.offset = 0
        self.window_oldest = None
        if oldest is None:  # the cap refused even the first page: nothing more can be reached
            self.gaps.append((self.floor, self.hi if self.hi is not None else int(self.now.timestamp())))
            self.complete = True
            return
        if self.hi is not None and oldest >= self.hi:
            # more than a cap's worth of trades in one second: unreachable by offset or time
            log.warning("offset cap reached inside one second; recording a gap", second=oldest)
            self.gaps.append((oldest, oldest))
            self.hi = oldest - 1
        else:
            self.hi = oldest
        if self.hi < self.floor:
            self.complete = True


class CursorPager(TradePager):
    """``/v2/trades`` by cursor, newest first, until a page reaches below ``floor``."""

    def __init__(
        self,
        data: DataApiClient,
        *,
        floor: int,
        page_size: int,
        max_pages: int | None,
        filter_amount: float,
        now: datetime,
    ) -> None:
        super().__init__(floor=floor, page_size=page_size, max_pages=max_pages)
        self.data = data
        self.filter_amount = filter_amount
        self.now = now
        self.cursor: str | None = None
        self.seen_cursors: set[str] = set()
        self.repeated_cursor = False

    @property
    def resume_hi(self) -> int | None:
        """Every trade newer than the oldest seen is paged."""
        return self.oldest

    async def pages_iter(self) -> AsyncIterator[list[Any]]:
        """Raw pages, newest first; state is updated before each yield."""
        while not self.done:
            rows, next_cursor = await self._fetch(self._request, _no_wait)
            self.pages += 1
            stamps = page_timestamps(rows, self.now)
            self._seen(stamps)
            if next_cursor is None or (stamps and min(stamps) < self.floor):
                self.complete = True
            elif next_cursor in self.seen_cursors:
                log.warning("v2 trades cursor seen twice; stopping", cursor=next_cursor)
                self.repeated_cursor = True
                self.max_pages = self.pages  # stop here; the rest of the window becomes a gap
            else:
                self.seen_cursors.add(next_cursor)
                self.cursor = next_cursor
            yield rows

    async def _request(self) -> tuple[list[Any], str | None]:
        return await self.data.trades_v2(
            cursor=self.cursor,
            limit=self.page_size if self.cursor is None else None,
            taker_only=True,
            filter_type="CASH",
            filter_amount=self.filter_amount,
        )


def log_rejects(page: TradesPage) -> None:
    """One clear line per rejected trade, and the metric."""
    for item in page.rejected:
        log.warning("trade rejected", source=item.source, reason=item.reason)
        metrics.REJECTED_PAYLOADS.labels(source=item.source).inc()


def bad_answer_rows(pager: TradePager, feed: Feed, now: datetime) -> list[dict[str, Any]]:
    """``rejected_payloads`` rows for answers that were not JSON (then cleared)."""
    reason = "page is not valid JSON"
    rows = [rejected_row(REJECT_SOURCE[feed], reason, text, now) for text in pager.bad_answers]
    pager.bad_answers.clear()
    return rows


def _write_page(
    tx: Tx,
    *,
    page: TradesPage,
    bad: list[dict[str, Any]],
    final: tuple[int | None, list[tuple[int, int]]] | None,
    now: datetime,
) -> int:
    """A page's trades and rejects; on the run's last page also its watermark and gaps."""
    tx.reject(bad)
    written = store_trades_page(tx, page, now)
    if final is not None:
        _finish(tx, final[0], final[1], now)
    return written


def _finish(tx: Tx, watermark: int | None, gaps: Sequence[tuple[int, int]], now: datetime) -> None:
    if watermark is not None:
        set_watermark(tx, watermark, now)
    add_gaps(tx, gaps, now)


async def run(ctx: JobContext) -> JobResult:
    """One pass over the rolling window; see the module notes."""
    s = ctx.settings
    now = ctx.clock()
    now_ts = int(now.timestamp())
    watermark = await asyncio.to_thread(load_watermark, ctx.store)
    if watermark is not None:
        floor = watermark - s.trades_safety_window_seconds
    else:
        floor = now_ts - int(s.trades_initial_lookback_hours * 3600)
    feed: Feed = s.trades_feed
    pager: OffsetPager | CursorPager
    if feed == "v2":
        pager = CursorPager(
            ctx.clients.data,
            floor=floor,
            page_size=s.trades_page_size,
            max_pages=s.trades_max_pages,
            filter_amount=s.large_trade_usd_threshold,
            now=now,
        )
    else:
        pager = OffsetPager(
            ctx.clients.data,
            floor=floor,
            hi=None,
            page_size=s.trades_page_size,
            offset_cap=s.trades_offset_cap,
            max_pages=s.trades_max_pages,
            filter_amount=s.large_trade_usd_threshold,
            now=now,
        )
    result = JobResult()
    result.details.update(feed=feed, floor=floor, watermark_before=watermark)
    finished = False
    try:
        async for items in pager.pages_iter():
            received = ctx.clock()
            page = normalize_trades(items, received, SOURCE_V2 if feed == "v2" else SOURCE_V1, feed)
            log_rejects(page)
            bad = bad_answer_rows(pager, feed, received)
            final = _final_state(pager, watermark, floor, now_ts) if pager.done else None
            written = await ctx.store.awrite(
                partial(_write_page, page=page, bad=bad, final=final, now=received)
            )
            finished = final is not None
            result.rows_written += written
            result.count("seen", len(page.rows))
            result.count("rejected", len(page.rejected))
            metrics.ROWS_WRITTEN.labels(table="trades").inc(written)
    except (ApiError, PayloadError) as exc:
        bad = bad_answer_rows(pager, feed, ctx.clock())
        if bad:
            await ctx.store.awrite(lambda tx: tx.reject(bad))
        if pager.pages == 0:
            raise
        result.partial(f"stopped after {pager.pages} pages: {exc}; the watermark stays for the next run")
        _report(result, pager)
        return result
    watermark_after, gaps = _final_state(pager, watermark, floor, now_ts)
    if not finished:
        await ctx.store.awrite(lambda tx: _finish(tx, watermark_after, gaps, ctx.clock()))
    result.details.update(watermark=watermark_after, gaps=[list(g) for g in gaps])
    if gaps:
        result.partial(f"{len(gaps)} window(s) not covered, recorded as gaps for the backfill")
    _report(result, pager)
    return result


def _final_state(
    pager: OffsetPager | CursorPager, watermark: int | None, floor: int, now_ts: int
) -> tuple[int | None, list[tuple[int, int]]]:
    """The watermark and gaps a run that ends now leaves behind."""
    gaps = list(pager.gaps)
    if not pager.complete:
        upper = pager.resume_hi
        gaps.append((floor, upper if upper is not None else now_ts))
    newest = pager.newest
    if newest is None:
        return watermark, gaps
    return (newest if watermark is None else max(watermark, newest)), gaps


def _report(result: JobResult, pager: OffsetPager | CursorPager) -> None:
    result.details.update(pages=pager.pages, complete=pager.complete)
    result.details["duplicates"] = result.details.get("seen", 0) - result.rows_written
    if isinstance(pager, OffsetPager):
        result.details.update(narrowings=pager.narrowings, offset_cap_refusals=pager.cap_refusals)
    elif pager.repeated_cursor:
        result.partial("the v2 cursor repeated; paging stopped")
