"""Persisting the live books: one transaction per flush, only what changed, plus feed health.

Flushes run several times per ``book_write_seconds`` and each takes the
books with unsaved changes that were not written within that interval, so every book
is written at most once per interval without waiting for a global tick. A write is
its ``orderbooks`` row (with its hash status, checked first when a deferred check is
pending), its changed levels upserted and removed ones deleted (a full
replacement for a new book). Rejected payloads, books of tokens that left the
universe and, every few seconds, the ``sync_state`` key ``"ws_feed"`` go in the same
transaction.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from polytape import metrics
from polytape.bookfeed.keeper import BookKeeper
from polytape.errors import StoreError
from polytape.store import Store
from polytape.store.books import BookWrite, delete_books, write_books
from polytape.store.core import Tx
from polytape.store.runs import rejected_row

log = structlog.get_logger("polytape.bookfeed.writer")

HEALTH_KEY = "ws_feed"
SLICE_SECONDS = 0.1  # building a round yields to the event loop after this long (a round of
# the whole venue takes tens of thousands of books: about a second of work in one piece
# delayed every socket read and the archive's flush by as much)
REJECT_SOURCE = "clob.ws"
FlushHook = Callable[[datetime, dict[str, int]], None]  # (committed_at, token -> book ts ms)


@dataclass
class FlushResult:
    """What one flush wrote."""

    books: int = 0
    levels: int = 0
    rejected: int = 0
    deleted: int = 0
    health: bool = False


@dataclass
class BookWriter:
    """Builds and commits flushes of the keeper's books."""

    store: Store
    keeper: BookKeeper
    clock: Callable[[], datetime]
    health: Callable[[datetime], dict[str, Any]]
    health_interval: float = 5.0
    min_interval: float = 0.0  # per book, seconds between two writes
    max_levels: int = 100_000  # per flush: the first write of 46,000 books is 1.8 M levels,
    # which as one batch held ~400 MB of tuples at once; the rest waits for the next round
    on_flush: FlushHook | None = None
    monotonic: Callable[[], float] = time.monotonic
    last_written: dict[str, float] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    neg_risk_written: dict[str, bool] = field(default_factory=dict)  # condition id -> value stored
    # seconds after which every market's neg_risk is written again (the UPDATE skips a market
    # Gamma has not stored yet, so a first write may have done nothing)
    neg_risk_refresh: float = 300.0
    _neg_risk_since: float = -math.inf  # when neg_risk_written was last emptied
    flushes: int = 0
    failures: int = 0
    build_seconds: float = 0.0  # the last round's batch building (wall clock, yields included)
    _last_health: datetime | None = None
    _cursor: int = 0

    async def flush(self, *, force_health: bool = False) -> FlushResult:
        """Write everything pending in one transaction (a failed write is retried next time)."""
        now = self.clock()
        began = time.perf_counter()
        batch = BookWrite()
        stamps: dict[str, int] = {}
        mono = self.monotonic()
        ready = mono - self.min_interval
        last_written = self.last_written
        keeper = self.keeper
        tracked = keeper.registry.books
        books = list(tracked.values())
        start = self._cursor % len(books) if books else 0  # a capped round resumes here
        self._cursor = 0
        slice_end = time.perf_counter() + SLICE_SECONDS
        for i, book in enumerate(books[start:] + books[:start]):
            if i & 255 == 255 and time.perf_counter() >= slice_end:
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    self._unwind(batch)
                    raise
                slice_end = time.perf_counter() + SLICE_SECONDS
            if book.pending_write and (force_health or last_written.get(book.token_id, -math.inf) <= ready):
                if tracked.get(book.token_id) is not book:
                    continue  # left the universe (or was replaced) while this round yielded
                if book.check_pending:
                    keeper.settle(book)  # its hash status is stored with it: check it first
                batch.add(book, now)
                stamps[book.token_id] = book.timestamp_ms
                last_written[book.token_id] = mono
                if batch.levels >= self.max_levels and not force_health:
                    self._cursor = start + i + 1
                    break
        # the markets' neg_risk changes about never: write only what the store lacks, and
        # everything again now and then (an UPDATE skips a market Gamma has not stored yet)
        if mono - self._neg_risk_since >= self.neg_risk_refresh:
            self.neg_risk_written.clear()
            self._neg_risk_since = mono
        written_nr = self.neg_risk_written
        batch.neg_risk = {c: v for c, v in batch.neg_risk.items() if written_nr.get(c) is not v}
        rejected, self.keeper.rejected = self.keeper.rejected, []
        rows = [rejected_row(REJECT_SOURCE, r.reason, r.raw, at) for r, at in rejected]
        removed, self.removed = sorted(self.removed), set()
        if removed:  # a token that left while the round yielded is deleted, not written
            batch.drop(set(removed))
        due = self._last_health is None or (now - self._last_health).total_seconds() >= self.health_interval
        health = self.health(now) if (due or force_health) else None
        result = FlushResult(len(batch.rows), 0, len(rows), len(removed), health is not None)
        self.build_seconds = time.perf_counter() - began
        if not (batch or rows or removed or health):
            return result

        def write(tx: Tx) -> int:
            tx.reject(rows)
            delete_books(tx, removed)
            levels = write_books(tx, batch, now)
            if health is not None:
                tx.set_state(HEALTH_KEY, health, now)
            return levels

        try:
            result.levels = await self.store.awrite(write)
        except StoreError as exc:
            self.failures += 1
            log.error("book flush failed; will rewrite those books", error=str(exc)[:300])
            self._unwind(batch)
            self.removed.update(removed)
            return FlushResult()
        self.flushes += 1
        written_nr.update(batch.neg_risk)
        if health is not None:
            self._last_health = now
        metrics.ROWS_WRITTEN.labels(table="orderbook_levels").inc(result.levels)
        metrics.ROWS_WRITTEN.labels(table="orderbooks").inc(result.books)
        if rows:
            metrics.REJECTED_PAYLOADS.labels(source=REJECT_SOURCE).inc(len(rows))
        if self.on_flush is not None and stamps:
            self.on_flush(self.clock(), stamps)
        return result

    def _unwind(self, batch: BookWrite) -> None:
        """The batch was not written: its books are written whole next time."""
        for row in batch.rows:
            book = self.keeper.registry.books.get(row["token_id"])
            if book is not None:
                book.force_full_write()
