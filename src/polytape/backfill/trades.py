"""``polytape backfill trades``: page ``/trades`` over a time window into the store.

Pages the v1 feed newest first over ``[since, until]`` (``takerOnly``; all sizes, or
``filterType=CASH`` ≥ ``--min-usd``; optionally ``--market`` condition ids), paced at
``POLYTAPE_BACKFILL_REQUESTS_PER_SECOND``, with a progress bar over the window's time and
an ETA. The offset cap never hides anything: at the cap the window is cut at the oldest
trade seen and paging restarts there with a fresh offset budget (see
:class:`polytape.paging.TradeWindowPager`).

Resumable: after every page its rows, rejects and the position (``hi``: everything newer
is stored) commit together in ``sync_state`` under a key made of the command's
arguments, so the same command after Ctrl-C, an error or a crash resumes at that position
(the window's absolute bounds are kept from the first run). A finished backfill starts
over on the next run (idempotently). A finished backfill of all markets at or below the
large-trade threshold also clears the large-trades job's gaps inside its window.

The cursor feed (``/v2/trades``) cannot be windowed by time on its bare or market shape,
so the backfill always uses ``/trades``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from polytape.backfill import Pacer, Reporter, SilentReporter, parse_since
from polytape.errors import ApiError, BackfillFailed, ConfigError, PayloadError
from polytape.ingest.trades import bad_answer_rows, log_rejects, window_pages
from polytape.normalize.trades import SOURCE_BACKFILL, TradeLimits, TradesPage, normalize_trades
from polytape.paging import TradeWindowPager
from polytape.runtime import JobContext
from polytape.store.core import Tx
from polytape.store.trades import clear_gaps, merge_intervals, store_trades_page


@dataclass
class Position:
    """Where a backfill stands: its window and ``hi`` (every trade newer than it is stored)."""

    start: int
    end: int
    hi: int
    finished: bool = False
    gaps: list[list[int]] = field(default_factory=list)
    pages: int = 0
    trades: int = 0

    @classmethod
    def from_state(cls, value: Any) -> Position | None:
        """The stored position, or None if there is none or it is unreadable."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                start=int(value["start"]),
                end=int(value["end"]),
                hi=int(value["hi"]),
                finished=bool(value.get("finished")),
                gaps=[[int(a), int(b)] for a, b in value.get("gaps") or []],
                pages=int(value.get("pages") or 0),
                trades=int(value.get("trades") or 0),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def as_state(self) -> dict[str, Any]:
        """JSON for ``sync_state``."""
        return {
            "start": self.start,
            "end": self.end,
            "hi": self.hi,
            "finished": self.finished,
            "gaps": self.gaps,
            "pages": self.pages,
            "trades": self.trades,
        }


def state_key(since: str, until: str | None, min_usd: float | None, markets: list[str]) -> str:
    """The ``sync_state`` key of one backfill command; the same command resumes it."""
    scope = ",".join(sorted(m.lower() for m in markets))
    if len(scope) > 40:
        scope = hashlib.blake2b(scope.encode(), digest_size=8).hexdigest()
    floor = min_usd if min_usd is not None else "all"
    return f"backfill:trades:{since}:{until or 'now'}:{floor}:{scope or 'all'}"


def backfill_window(since: str, until: str | None, min_usd: float | None, now: datetime) -> tuple[int, int]:
    """The window ``[since, until]`` in epoch seconds; :class:`ConfigError` if it is not one."""
    since_at = parse_since(since, now)
    until_at = parse_since(until, now) if until else now
    if since_at >= until_at or (min_usd is not None and min_usd < 0):
        raise ConfigError("--since must be before --until, --min-usd not negative")
    return int(since_at.timestamp()), int(until_at.timestamp())


async def run_backfill(
    ctx: JobContext,
    *,
    key: str,
    window: tuple[int, int],
    min_usd: float | None,
    markets: list[str],
    report: Reporter | None = None,
) -> Position:
    """The backfill on an open context (see the module notes); returns where it ended.

    Raises :class:`BackfillFailed` when a page fails (what was stored stays; the same
    command resumes).
    """
    report = report or SilentReporter()
    s = ctx.settings
    position = Position.from_state(await asyncio.to_thread(ctx.store.get_state, key))
    if position is None or position.finished:
        position = Position(start=window[0], end=window[1], hi=window[1])
    else:
        report.note(f"resuming {key} below {_when(position.hi)} ({position.pages} pages stored)")
    pager = TradeWindowPager(
        floor=position.start,
        hi=position.hi,
        page_size=s.trades_page_size,
        offset_cap=s.trades_offset_cap,
        max_pages=None,
        now=ctx.clock(),
    )
    pages = window_pages(
        ctx.clients.data,
        pager,
        filter_amount=min_usd,
        markets=markets or None,
        before_request=Pacer(s.backfill_requests_per_second).wait,
    )
    clears_gaps = not markets and (min_usd is None or min_usd <= s.large_trade_usd_threshold)
    total = max(1, position.end - position.start)
    report.begin(total, position.end - position.hi)
    try:
        async for items in pages:
            now = ctx.clock()
            limits = TradeLimits(s.trade_max_size, s.trade_max_usd)
            page = normalize_trades(items, now, SOURCE_BACKFILL, limits=limits)
            page.rows = [r for r in page.rows if min_usd is None or r["usd_value"] >= min_usd]
            log_rejects(page, len(items))
            _advance(position, pager, pages=1)
            write = partial(
                _write, page=page, bad=bad_answer_rows(pager, "v1", now), key=key, position=position
            )
            position.trades += await ctx.store.awrite(partial(write, clear=clears_gaps, now=now))
            if ctx.runtime.archive is not None:
                ctx.runtime.archive.record_trades(page.rows, now)
            report.progress(position.end - position.hi, stats(position))
        if not position.finished:  # finished without a page (the window was cut empty)
            _advance(position, pager, pages=0)
            done = partial(_write, page=TradesPage(), bad=[], key=key, position=position)
            await ctx.store.awrite(partial(done, clear=clears_gaps, now=ctx.clock()))
        report.progress(total, stats(position))
    except (ApiError, PayloadError) as exc:
        raise BackfillFailed(
            f"{exc}; {position.pages} page(s) stored; run the same command again to resume"
        ) from exc
    if position.gaps:
        report.note(f"not reachable through the offset cap: seconds {position.gaps}", warning=True)
    return position


def _advance(position: Position, pager: TradeWindowPager, *, pages: int) -> None:
    """Carry the pager's position into the stored one (before the page commits)."""
    position.pages += pages
    position.finished = pager.complete
    hi = pager.resume_hi
    position.hi = position.start if pager.complete or hi is None else max(position.start, hi)
    position.gaps = [list(g) for g in merge_intervals([*position.gaps, *pager.gaps])]


def _write(
    tx: Tx,
    *,
    page: TradesPage,
    bad: list[dict[str, Any]],
    key: str,
    position: Position,
    clear: bool,
    now: datetime,
) -> int:
    """One page's trades and rejects with the position that covers them."""
    tx.reject(bad)
    written = store_trades_page(tx, page, now)
    tx.set_state(key, position.as_state(), now)
    if position.finished and clear:
        clear_gaps(tx, position.start, position.end, now)
    return written


def stats(position: Position) -> str:
    """Where a backfill stands, in words."""
    return f"{position.pages} pages, {position.trades} new trades, down to {_when(position.hi)}"


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
