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
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from polytape import metrics
from polytape.errors import ApiError, PayloadError
from polytape.ingest.trades import bad_answer_rows, cursor_pages, log_rejects, window_pages
from polytape.jobs.base import JobContext, JobResult
from polytape.normalize.trades import SOURCE_V1, SOURCE_V2, Feed, TradeLimits, TradesPage, normalize_trades
from polytape.paging import TradeCursorPager, TradeWindowPager
from polytape.store.core import Tx
from polytape.store.trades import add_gaps, load_watermark, set_watermark, store_trades_page

log = structlog.get_logger("polytape.jobs.sync_large_trades")


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
    pager: TradeWindowPager | TradeCursorPager
    pages: AsyncIterator[list[Any]]
    if feed == "v2":
        pager = TradeCursorPager(
            floor=floor, page_size=s.trades_page_size, max_pages=s.trades_max_pages, now=now
        )
        pages = cursor_pages(ctx.clients.data, pager, filter_amount=s.large_trade_usd_threshold)
    else:
        pager = TradeWindowPager(
            floor=floor,
            hi=None,
            page_size=s.trades_page_size,
            offset_cap=s.trades_offset_cap,
            max_pages=s.trades_max_pages,
            now=now,
        )
        pages = window_pages(ctx.clients.data, pager, filter_amount=s.large_trade_usd_threshold)
    result = JobResult()
    result.details.update(feed=feed, floor=floor, watermark_before=watermark)
    finished = False
    try:
        async for items in pages:
            received = ctx.clock()
            source = SOURCE_V2 if feed == "v2" else SOURCE_V1
            limits = TradeLimits(s.trade_max_size, s.trade_max_usd)
            page = normalize_trades(items, received, source, feed, limits)
            bad_items = log_rejects(page, len(items))
            bad = bad_answer_rows(pager, feed, received)
            final = _final_state(pager, watermark, floor, now_ts) if pager.done else None
            written = await ctx.store.awrite(
                partial(_write_page, page=page, bad=bad, final=final, now=received)
            )
            finished = final is not None
            if ctx.runtime.archive is not None:
                ctx.runtime.archive.record_trades(page.rows, received)
            result.rows_written += written
            result.count("seen", len(page.rows))
            result.count("rejected", bad_items)
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
    pager: TradeWindowPager | TradeCursorPager, watermark: int | None, floor: int, now_ts: int
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


def _report(result: JobResult, pager: TradeWindowPager | TradeCursorPager) -> None:
    result.details.update(pages=pager.pages, complete=pager.complete)
    result.details["duplicates"] = result.details.get("seen", 0) - result.rows_written
    if isinstance(pager, TradeWindowPager):
        result.details.update(narrowings=pager.narrowings, offset_cap_refusals=pager.cap_refusals)
    elif pager.repeated_cursor:
        result.partial("the v2 cursor repeated; paging stopped")
