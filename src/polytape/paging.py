"""Pagers: pure state machines that say which page to ask for next, given the last answer.

No pager does I/O. The caller (a job, a backfill, or the walkers in :mod:`polytape.ingest`)
asks :meth:`next_request` for the parameters of the next page, sends the request, and
hands the answer back (``on_page``, ``on_cap_refused``); ``None`` from ``next_request``
means the walk is over. Every pager's state can be inspected at any time, so a caller can
commit it with the page it follows and resume from it.

- :class:`GammaCursor`: Gamma events, by keyset (``/events/keyset``, ``after_cursor``)
  or by the deprecated offset list (``/events?order=id&ascending=false&offset=…``).
  :func:`first_sightings` drops the repeats offset pages over a live set produce.
- :class:`TradeWindowPager`: the Data API's ``/trades`` newest first down to a floor,
  by offset, narrowing the time window (``end`` = the oldest trade seen) at the offset
  cap; what no window can reach (more than a cap's worth in one second) becomes a gap.
- :class:`TradeCursorPager`: ``/v2/trades`` by cursor; a repeated cursor stops it.

Imports: :mod:`polytape.normalize` (timestamps) only; it logs what it decides, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from polytape.normalize.trades import TradePayloadError, parse_trade_ts

log = structlog.get_logger("polytape.paging")

# --- Gamma ---------------------------------------------------------------------------------


@dataclass
class GammaCursor:
    """Where a Gamma events walk stands: the next page's cursor (keyset) or offset, pages done."""

    paging: str
    after_cursor: str | None = None
    offset: int = 0
    pages: int = 0
    done: bool = False

    def next_request(self, page_size: int) -> dict[str, Any] | None:
        """Paging parameters of the next page (filters are the caller's), or None when done."""
        if self.done:
            return None
        if self.paging == "keyset":
            return {"limit": page_size, "after_cursor": self.after_cursor}
        return {"limit": page_size, "offset": self.offset, "order": "id", "ascending": False}

    def on_page(self, n_events: int, next_cursor: str | None = None, *, page_size: int) -> None:
        """Advance past a page of ``n_events`` events (keyset: with the answer's next cursor)."""
        if self.paging == "keyset":
            self.after_cursor = next_cursor
            self.done = next_cursor is None or n_events == 0
        else:
            self.offset += n_events
            self.done = n_events < page_size
        self.pages += 1

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


def first_sightings(events: list[dict[str, Any]], seen: set[str]) -> tuple[list[dict[str, Any]], int]:
    """Events whose id was not seen earlier in the walk (items without an id pass through)."""
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


# --- Data API trades -------------------------------------------------------------------------


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

    def __init__(self, *, floor: int, page_size: int, max_pages: int | None, now: datetime) -> None:
        self.floor = floor
        self.page_size = page_size
        self.max_pages = max_pages
        self.now = now
        self.pages = 0
        self.newest: int | None = None
        self.oldest: int | None = None
        self.complete = False
        self.gaps: list[tuple[int, int]] = []
        self.bad_answers: list[str] = []
        """Texts of answers that were not JSON (the caller notes them; rejected_payloads rows)."""

    @property
    def exhausted(self) -> bool:
        """The page budget is spent."""
        return self.max_pages is not None and self.pages >= self.max_pages

    @property
    def done(self) -> bool:
        """No further page will be asked for."""
        return self.complete or self.exhausted

    def _seen(self, stamps: Sequence[int]) -> None:
        if stamps:
            top, bottom = max(stamps), min(stamps)
            self.newest = top if self.newest is None else max(self.newest, top)
            self.oldest = bottom if self.oldest is None else min(self.oldest, bottom)


@dataclass(frozen=True)
class TradeWindow:
    """One ``/trades`` request: ``limit`` trades from ``offset`` within ``[start, end]``."""

    limit: int
    offset: int
    start: int
    end: int | None


class TradeWindowPager(TradePager):
    """``/trades`` over ``[floor, hi]`` by offset, narrowing ``hi`` by time at the offset cap.

    The API refuses offsets past its cap: at the cap (from ``offset_cap`` or a refusal,
    :meth:`on_cap_refused`) the window narrows to ``end = oldest trade seen`` and paging
    restarts at offset 0; each window has its own offset budget.
    """

    def __init__(
        self,
        *,
        floor: int,
        hi: int | None,
        page_size: int,
        offset_cap: int,
        max_pages: int | None,
        now: datetime,
    ) -> None:
        super().__init__(floor=floor, page_size=page_size, max_pages=max_pages, now=now)
        self.hi = hi
        self.offset = 0
        self.offset_cap = offset_cap
        self.window_oldest: int | None = None
        self.narrowings = 0
        self.cap_refusals = 0

    @property
    def resume_hi(self) -> int | None:
        """Upper bound still to cover: every trade newer than it (down from the start) is paged."""
        return self.window_oldest if self.window_oldest is not None else self.hi

    def next_request(self) -> TradeWindow | None:
        """The next page to ask for, or None when the walk is over."""
        while not self.done:
            if self.offset < self.offset_cap:
                return TradeWindow(self.page_size, self.offset, self.floor, self.hi)
            self._narrow()
        return None

    def on_page(self, items: Sequence[Any]) -> None:
        """Advance past the answer to :meth:`next_request`."""
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

    def on_cap_refused(self) -> None:
        """The API refused the offset (past its cap): continue in a narrower window."""
        self.cap_refusals += 1
        log.info("offset cap reached; narrowing the window", offset=self.offset, end=self.hi)
        self._narrow()

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


@dataclass(frozen=True)
class TradeCursorRequest:
    """One ``/v2/trades`` request: the first page sets ``limit``, later ones only the cursor."""

    cursor: str | None
    limit: int | None


class TradeCursorPager(TradePager):
    """``/v2/trades`` by cursor, newest first, until a page reaches below ``floor``."""

    def __init__(self, *, floor: int, page_size: int, max_pages: int | None, now: datetime) -> None:
        super().__init__(floor=floor, page_size=page_size, max_pages=max_pages, now=now)
        self.cursor: str | None = None
        self.seen_cursors: set[str] = set()
        self.repeated_cursor = False

    @property
    def resume_hi(self) -> int | None:
        """Every trade newer than the oldest seen is paged."""
        return self.oldest

    def next_request(self) -> TradeCursorRequest | None:
        """The next page to ask for, or None when the walk is over."""
        if self.done:
            return None
        return TradeCursorRequest(self.cursor, self.page_size if self.cursor is None else None)

    def on_page(self, rows: Sequence[Any], next_cursor: str | None) -> None:
        """Advance past the answer to :meth:`next_request`."""
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
