"""Data API trades: the page walks (requests driven by :mod:`polytape.paging`) and rejects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog

from polytape.clients.data_api import DataApiClient
from polytape.errors import OffsetCapExceeded, PayloadError, ResponseTooLarge
from polytape.ingest.rejects import cap_and_log
from polytape.normalize.trades import REJECT_SOURCE, Feed, TradesPage
from polytape.paging import TradeCursorPager, TradePager, TradeWindowPager
from polytape.store.runs import rejected_row

log = structlog.get_logger("polytape.ingest.trades")

PAYLOAD_RETRIES = 2  # a page that is not JSON is asked for again this many times
BeforeRequest = Callable[[], Awaitable[None]]
T = TypeVar("T")


async def _no_wait() -> None:
    return None


async def _fetch(pager: TradePager, call: Callable[[], Awaitable[T]], before: BeforeRequest) -> T:
    """One request; an answer that is not JSON is noted on the pager and asked for again."""
    for attempt in range(PAYLOAD_RETRIES + 1):
        await before()
        try:
            return await call()
        except (PayloadError, ResponseTooLarge) as exc:
            raw = exc.raw or str(exc)
            if raw not in pager.bad_answers:  # the same bad page asked for again is kept once
                pager.bad_answers.append(raw)
            log.warning("trades page unusable", attempt=attempt + 1, error=str(exc)[:200])
            if attempt == PAYLOAD_RETRIES or isinstance(exc, ResponseTooLarge):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def window_pages(
    data: DataApiClient,
    pager: TradeWindowPager,
    *,
    filter_amount: float | None,
    markets: Sequence[str] | None = None,
    before_request: BeforeRequest = _no_wait,
) -> AsyncIterator[list[Any]]:
    """Raw ``/trades`` pages, newest first; the pager's state is advanced before each yield."""
    market = list(markets) if markets else None
    while (window := pager.next_request()) is not None:

        async def request(w: Any = window) -> list[dict[str, Any]]:
            return await data.trades(
                limit=w.limit,
                offset=w.offset,
                taker_only=True,
                filter_type="CASH" if filter_amount is not None else None,
                filter_amount=filter_amount,
                market=market,
                start=w.start,
                end=w.end,
            )

        try:
            items = await _fetch(pager, request, before_request)
        except OffsetCapExceeded:
            pager.on_cap_refused()
            continue
        pager.on_page(items)
        yield items


async def cursor_pages(
    data: DataApiClient, pager: TradeCursorPager, *, filter_amount: float
) -> AsyncIterator[list[Any]]:
    """Raw ``/v2/trades`` pages, newest first; the pager's state is advanced before each yield."""
    while (req := pager.next_request()) is not None:

        async def request(r: Any = req) -> tuple[list[dict[str, Any]], str | None]:
            return await data.trades_v2(
                cursor=r.cursor,
                limit=r.limit,
                taker_only=True,
                filter_type="CASH",
                filter_amount=filter_amount,
            )

        rows, next_cursor = await _fetch(pager, request, _no_wait)
        pager.on_page(rows, next_cursor)
        yield rows


def log_rejects(page: TradesPage, total: int) -> int:
    """Log the page's rejected trades (capped) and cap what is kept of them; returns how
    many items were bad."""
    bad = len(page.rejected)
    page.rejected = cap_and_log(log, "trade rejected", page.rejected, total)
    return bad


def bad_answer_rows(pager: TradePager, feed: Feed, now: datetime) -> list[dict[str, Any]]:
    """``rejected_payloads`` rows for answers that were not JSON (then cleared)."""
    reason = "page is not valid JSON or over the size cap"
    rows = [rejected_row(REJECT_SOURCE[feed], reason, text, now) for text in pager.bad_answers]
    pager.bad_answers.clear()
    return rows
