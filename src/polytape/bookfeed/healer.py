"""Healing the live books from REST: periodic snapshots and requested resyncs, rate-limited.

Every ``book_resync_minutes`` each tracked token whose whole book the server has not
confirmed in that time (no WS snapshot and no passed hash check: a quiet book, or hash
checks off) gets a fresh REST snapshot; a verified live book needs none. A book also
needs one while it lacks ``min_order_size`` or ``neg_risk`` (hash inputs only REST
serves), so each new book is fetched once. A token
the keeper flagged (hash mismatch, delta for an unknown book, broken sequence,
reconnect, tick-size change) is fetched soon, but never more often than once per
``min_gap`` seconds, so a hash algorithm that changed under us cannot turn into a
storm of REST calls (lessons.md #4). Snapshots travel in ``POST /books`` batches.

The feed looks four times a second; at venue scale a walk over every token each time
was about 4 % of a core. A walk that finds nothing due notes the soonest moment a book
could fall due (every input only moves later), and looks before then skip the walk
unless a token or a book entered or left (``BookRegistry.generation``).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import structlog

from polytape import metrics
from polytape.bookfeed.keeper import BookKeeper
from polytape.bookfeed.rest import fetch_books
from polytape.clients.clob import ClobClient

log = structlog.get_logger("polytape.bookfeed.healer")

MAX_BATCHES_PER_TICK = 2


def resync_gap(resync_seconds: float) -> float:
    """Shortest time between two forced (not periodic) resyncs of one token."""
    return min(10.0, max(0.5, resync_seconds / 30))


class Healer:
    """Decides which tokens need a REST snapshot now, fetches and hands them to the keeper."""

    def __init__(
        self,
        keeper: BookKeeper,
        clob: ClobClient,
        *,
        resync_seconds: float,
        batch_size: int,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keeper = keeper
        self.clob = clob
        self.resync_seconds = resync_seconds
        self.min_gap = resync_gap(resync_seconds)
        self.batch_size = batch_size
        self.clock = clock
        self.monotonic = monotonic
        self.last_attempt: dict[str, float] = {}
        self.last_forced: dict[str, float] = {}
        self.last_snapshot: dict[str, float] = {}
        self.performed: Counter[str] = Counter()
        self.errors = 0
        # (registry generation, monotonic, wall): until both times, with the same tokens
        # and books, no book is due a periodic snapshot and the look skips the scan
        self._quiet_until: tuple[int, float, float] | None = None

    def due(self) -> list[tuple[str, str]]:
        """``(token, reason)`` pairs to fetch now, requested ones first, capped per tick."""
        now = self.monotonic()
        keeper = self.keeper
        out: list[tuple[str, str]] = []
        for token_id, reason in keeper.wanted.items():
            waited = now - self.last_forced.get(token_id, -math.inf)
            if token_id not in keeper.in_flight and waited >= self.min_gap:
                out.append((token_id, reason))
        cap = self.batch_size * MAX_BATCHES_PER_TICK
        wall = self.clock().timestamp()
        registry = keeper.registry
        quiet_until = self._quiet_until
        if (
            quiet_until is not None
            and registry.generation == quiet_until[0]
            and now < quiet_until[1]
            and wall < quiet_until[2]
        ):
            return out[:cap]  # no book can be due for a periodic snapshot yet
        chosen = {t for t, _ in out}
        confirmed, period, books = keeper.confirmed, self.resync_seconds, registry.books
        gap = self.min_gap
        # when the next book can fall due, if nothing else changes (every input below only
        # moves later, but for the books themselves: ``registry.generation``)
        soonest, soonest_wall = now + period, wall + period
        periodic = 0
        for token_id in registry.conditions:
            if token_id in chosen or token_id in keeper.in_flight:
                soonest = min(soonest, now + gap)
                continue
            not_before = max(
                self.last_snapshot.get(token_id, -math.inf) + period,
                self.last_attempt.get(token_id, -math.inf) + gap,
            )
            if now < not_before:
                soonest = min(soonest, not_before)
                continue
            book = books.get(token_id)
            # only REST serves min_order_size and neg_risk (hash inputs): fetch until known
            knows_inputs = book is not None and book.min_order_size is not None and book.neg_risk is not None
            if knows_inputs:
                confirmed_until = confirmed.get(token_id, -math.inf) + period
                if wall < confirmed_until:
                    soonest_wall = min(soonest_wall, confirmed_until)
                    continue
            out.append((token_id, "periodic"))
            periodic += 1
        self._quiet_until = None if periodic else (registry.generation, soonest, soonest_wall)
        return out[:cap]

    async def tick(self) -> set[str]:
        """Fetch what is due; returns the tokens whose books changed."""
        due = self.due()
        if not due:
            return set()
        tokens = [t for t, _ in due]
        now = self.monotonic()
        for token_id, reason in due:
            self.last_attempt[token_id] = now
            if reason != "periodic":
                self.last_forced[token_id] = now
            self.performed[reason] += 1
            metrics.BOOK_RESYNCS.labels(reason=reason).inc()
        self.keeper.begin_fetch(tokens)
        got = await fetch_books(self.clob, tokens, self.batch_size)
        received_at = self.clock()
        done = self.monotonic()
        changed: set[str] = set()
        for token_id, msg in got.books.items():
            changed |= self.keeper.apply_rest(msg, received_at)
            self.last_snapshot[token_id] = done
        for token_id in got.missing:
            changed |= self.keeper.no_book(token_id)
            self.last_snapshot[token_id] = done
        for token_id in got.failed:
            changed |= self.keeper.fetch_failed(token_id, received_at)
        for rejected in got.rejected:
            self.keeper.reject(rejected, received_at)
        if got.errors:
            self.errors += len(got.errors)
            log.warning("book resync failed", tokens=len(got.failed), error=got.errors[0][:300])
        return changed

    def forget(self, token_id: str) -> None:
        """A token left the universe."""
        self.last_attempt.pop(token_id, None)
        self.last_forced.pop(token_id, None)
        self.last_snapshot.pop(token_id, None)
