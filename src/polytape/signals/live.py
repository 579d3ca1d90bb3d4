"""Live books as the rules see them, with the feed's word on how current each one is.

A WebSocket book that nobody trades stays quiet: no message touches it, so its own
receipt time ages although the feed keeps it current. The feed vouches for such a
book while the connection carrying it is connected and delivering payloads (the
server sends every change of every subscribed book on that connection, in order) and
the book awaits no heal (no hash mismatch, sequence gap or snapshot in flight). Then
the book is as current as the connection's newest payload.

The feed is read through a narrow, duck-typed view (``channels`` with ``connected`` and
a monotonic ``last_payload_at``, ``owner`` token → channel name, and the keeper's
``wanted``/``in_flight`` heal sets), so a feed without them simply vouches for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from polytape.books import BookRegistry, OrderBook
from polytape.signals.model import BookView

Confirmations = Callable[[str], datetime | None]


def _none(_token_id: str) -> datetime | None:
    return None


def feed_confirmations(feed: Any, now: datetime, monotonic_now: float | None = None) -> Confirmations:
    """``token_id -> when the feed last confirmed its book`` (None: the feed cannot say)."""
    channels = getattr(feed, "channels", None)
    owner = getattr(feed, "owner", None)
    if not isinstance(channels, dict) or not isinstance(owner, dict):
        return _none
    keeper = getattr(feed, "keeper", None)
    suspect: set[str] = set(getattr(keeper, "wanted", ())) | set(getattr(keeper, "in_flight", ()))
    mono = time.monotonic() if monotonic_now is None else monotonic_now
    heard: dict[str, datetime] = {}
    for name, channel in channels.items():
        last = getattr(channel, "last_payload_at", 0.0)
        if getattr(channel, "connected", False) and isinstance(last, float) and last > 0:
            heard[name] = now - timedelta(seconds=max(mono - last, 0.0))

    def confirmed(token_id: str) -> datetime | None:
        if token_id in suspect:
            return None
        name = owner.get(token_id)
        return heard.get(name) if isinstance(name, str) else None

    return confirmed


def view_from_book(book: OrderBook, confirmed_at: datetime | None = None) -> BookView | None:
    """A live book as a view (None before its first snapshot). It counts as current from
    our receipt of its newest update, or from the feed's later confirmation."""
    when = book.received_at or book.updated_at
    if when is None or not book.has_snapshot:
        return None
    if confirmed_at is not None and confirmed_at > when:
        when = confirmed_at
    bids, asks = book.depth()
    return BookView(book.token_id, book.condition_id or None, tuple(bids), tuple(asks), when)


def views_from_registry(
    registry: BookRegistry,
    token_ids: Iterable[str] | None = None,
    confirmed: Confirmations = _none,
) -> dict[str, BookView]:
    """Views of the registry's books (all of them, or only ``token_ids``)."""
    out: dict[str, BookView] = {}
    for tid in registry.books if token_ids is None else token_ids:
        book = registry.get(tid)
        view = view_from_book(book, confirmed(tid)) if book is not None else None
        if view is not None:
            out[tid] = view
    return out
