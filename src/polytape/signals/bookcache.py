"""The stored books' tops, kept between passes so each pass reads only what changed.

A pass asks :meth:`StoredBooks.refresh` for the ``orderbooks`` rows updated since the
newest one it has seen, less :data:`OVERLAP_SECONDS` (a writer whose transaction
commits late, or whose clock runs a little behind ours, is still read), and never
older than the freshness limit (older books are not evidence anyway). A row that
differs from what is cached (time or best prices) marks its token changed; books past
the freshness limit are dropped. Nothing here decides whether a signal fires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from polytape.signals import inputs as inp
from polytape.signals.model import BookView
from polytape.store import signals as sstore

OVERLAP_SECONDS = 10.0


class StoredBooks:
    """Top-of-book views of the fresh stored books, refreshed incrementally."""

    def __init__(self, max_age_seconds: float, overlap_seconds: float = OVERLAP_SECONDS) -> None:
        self.max_age = timedelta(seconds=max_age_seconds)
        self.overlap = timedelta(seconds=overlap_seconds)
        self.views: dict[str, BookView] = {}
        self.seen_until: datetime | None = None

    def refresh(self, conn: Any, now: datetime) -> set[str]:
        """Read the rows updated since the last look; returns the tokens whose top changed."""
        fresh_since = now - self.max_age
        since = fresh_since if self.seen_until is None else max(fresh_since, self.seen_until - self.overlap)
        changed: set[str] = set()
        for row in sstore.book_tops(conn, since):
            view = inp.view_from_top(row)
            known = self.views.get(view.token_id)
            if known is None or _top(known) != _top(view):
                self.views[view.token_id] = view
                changed.add(view.token_id)
            if self.seen_until is None or view.updated_at > self.seen_until:
                self.seen_until = view.updated_at
        self.views = {t: v for t, v in self.views.items() if v.updated_at >= fresh_since}
        return changed

    def reset(self) -> None:
        """Forget everything: the next refresh reads every fresh book."""
        self.views.clear()
        self.seen_until = None


def _top(view: BookView) -> tuple[Any, ...]:
    return (view.condition_id, view.best_bid, view.best_ask, view.updated_at)
