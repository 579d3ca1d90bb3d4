"""The in-memory order book of each token: snapshots, deltas, top of book, hash, diffs.

Pure: no I/O and no clock (callers pass times in). Levels are keyed by their price as
a float and keep the server's price and size strings verbatim, because the book hash
(reference.md §3.6) is computed over those strings in the server's order: bids
ascending, asks descending.

:class:`OrderBook` also remembers which levels changed since the store last saw it
(:meth:`OrderBook.take_diff`), so the feed persists only changed levels.
:class:`BookRegistry` holds the books of every tracked token; other components (the
signal engine) read it from ``ctx.runtime.books``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from polytape.normalize.books import BUY, SELL, BookMsg, ms_to_datetime, timestamp_ms

HashStatus = Literal["verified", "unknown", "corrupted"]
Side = Literal["BUY", "SELL"]
LevelMap = dict[float, tuple[str, str]]  # price -> (price text, size text)

_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class BookDiff:
    """What changed in a book since the last :meth:`OrderBook.take_diff`.

    ``full`` means the stored levels must be replaced by ``upserts`` (first write,
    or the store may be out of step); otherwise upsert ``upserts``, delete ``deletes``.
    """

    token_id: str
    full: bool
    upserts: list[tuple[str, float, float]]  # (side, price, size)
    deletes: list[tuple[str, float]]  # (side, price)


def _parse_levels(levels: Iterable[msgspec.Struct]) -> LevelMap:
    out: LevelMap = {}
    for lvl in levels:
        price_text: str = lvl.price  # type: ignore[attr-defined]
        size_text: str = lvl.size  # type: ignore[attr-defined]
        price = float(price_text)
        size = float(size_text)
        if not (0.0 <= price <= 1.0) or not (0.0 <= size < float("inf")):
            raise ValueError(f"absurd level price={price_text!r} size={size_text!r}")
        if size > 0.0:
            out[price] = (price_text, size_text)
    return out


class OrderBook:
    """The current book of one token (see the module notes)."""

    __slots__ = (
        "_best_ask",
        "_best_bid",
        "_dirty",
        "_full",
        "asks",
        "bids",
        "condition_id",
        "has_snapshot",
        "hash",
        "hash_status",
        "last_trade_price",
        "meta_dirty",
        "min_order_size",
        "neg_risk",
        "received_at",
        "snapshot_at",
        "snapshot_ms",
        "source",
        "tick_size",
        "timestamp",
        "timestamp_ms",
        "token_id",
    )

    def __init__(self, token_id: str, condition_id: str = "") -> None:
        self.token_id = token_id
        self.condition_id = condition_id
        self.bids: LevelMap = {}
        self.asks: LevelMap = {}
        self.timestamp = ""  # the server's text, verbatim (hash input)
        self.timestamp_ms = 0
        self.hash = ""  # the server's newest hash for this book
        self.hash_status: HashStatus = "unknown"
        self.tick_size: str | None = None
        self.min_order_size: str | None = None
        self.neg_risk: bool | None = None
        self.last_trade_price = ""
        self.has_snapshot = False
        self.received_at: datetime | None = None
        self.snapshot_at: datetime | None = None
        self.snapshot_ms = 0  # server time of the last full snapshot
        self.source = "ws"
        self.meta_dirty = True
        self._dirty: set[tuple[str, float]] = set()
        self._full = True
        self._best_bid: float | None = None
        self._best_ask: float | None = None

    # ---- updates ---------------------------------------------------------------------

    def apply_snapshot(self, msg: BookMsg, received_at: datetime, *, source: str = "ws") -> None:
        """Replace the book by a ``book`` message or REST ``/book`` (``ValueError`` if absurd).

        Fields the message lacks (WS books carry no ``min_order_size``/``neg_risk``)
        keep their known values.
        """
        ts_ms = timestamp_ms(msg.timestamp)
        bids, asks = _parse_levels(msg.bids), _parse_levels(msg.asks)
        if not self._full:
            self._mark_replaced(BUY, self.bids, bids)
            self._mark_replaced(SELL, self.asks, asks)
        self.bids, self.asks = bids, asks
        self._best_bid = self._best_ask = None
        self.timestamp, self.timestamp_ms = str(msg.timestamp), ts_ms
        self.snapshot_ms = ts_ms
        self.hash = msg.hash
        if msg.tick_size is not None:
            self.tick_size = msg.tick_size
        if msg.last_trade_price is not None:
            self.last_trade_price = msg.last_trade_price
        if msg.min_order_size is not None:
            self.min_order_size = msg.min_order_size
        if msg.neg_risk is not None:
            self.neg_risk = msg.neg_risk
        if msg.market:
            self.condition_id = msg.market
        self.has_snapshot = True
        self.received_at = self.snapshot_at = received_at
        self.source = source
        self.meta_dirty = True

    def _mark_replaced(self, side: str, old: LevelMap, new: LevelMap) -> None:
        dirty = self._dirty
        for price, level in old.items():
            if new.get(price) != level:
                dirty.add((side, price))
        for price in new.keys() - old.keys():
            dirty.add((side, price))

    def apply_change(
        self, side: str, price: str, size: str, ts: str | int | None = None, ts_ms: int | None = None
    ) -> None:
        """Set one level to ``size`` (``"0"`` removes it); ``ValueError`` on absurd input.

        ``ts`` is the message's timestamp as served; ``ts_ms`` its value, when the caller
        already parsed it (one parse per message, not per level).
        """
        p = float(price)
        s = float(size)
        if not (0.0 <= p <= 1.0) or not (0.0 <= s < float("inf")):
            raise ValueError(f"absurd level price={price!r} size={size!r}")
        if side == BUY:
            levels = self.bids
            self._best_bid = None
        elif side == SELL:
            levels = self.asks
            self._best_ask = None
        else:
            raise ValueError(f"unknown side {side!r}")
        if s > 0.0:
            levels[p] = (price, size)
        else:
            levels.pop(p, None)
        if not self._full:
            self._dirty.add((side, p))
        if ts is not None and ts != self.timestamp:
            self.timestamp_ms = timestamp_ms(ts) if ts_ms is None else ts_ms
            self.timestamp = str(ts)
        self.meta_dirty = True

    def set_timestamp(self, ts: str | int) -> None:
        """Record the server time of the newest update (``ValueError`` if unreadable)."""
        self.timestamp_ms = timestamp_ms(ts)
        self.timestamp = str(ts)

    def set_last_trade_price(self, price: str) -> None:
        """Track ``last_trade_price`` (a hash input)."""
        if price != self.last_trade_price:
            self.last_trade_price = price
            self.meta_dirty = True

    # ---- reading ---------------------------------------------------------------------

    @property
    def best_bid(self) -> float | None:
        """Highest bid price, or None when there are no bids."""
        if self._best_bid is None and self.bids:
            self._best_bid = max(self.bids)
        return self._best_bid

    @property
    def best_ask(self) -> float | None:
        """Lowest ask price, or None when there are no asks."""
        if self._best_ask is None and self.asks:
            self._best_ask = min(self.asks)
        return self._best_ask

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid (None when a side is empty)."""
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else ask - bid

    @property
    def mid(self) -> float | None:
        """Midpoint of best bid and best ask (None when a side is empty)."""
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else (bid + ask) / 2

    @property
    def updated_at(self) -> datetime | None:
        """Server time of the newest update applied (UTC)."""
        return ms_to_datetime(self.timestamp_ms) if self.timestamp_ms else None

    def depth(self, n: int | None = None) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Best ``n`` levels per side as ``(price, size)``: bids high→low, asks low→high."""
        bids = sorted(self.bids.items(), reverse=True)[:n]
        asks = sorted(self.asks.items())[:n]
        return [(p, float(v[1])) for p, v in bids], [(p, float(v[1])) for p, v in asks]

    def levels(self) -> Iterator[tuple[str, float, float]]:
        """Every level as ``(side, price, size)``."""
        for p, (_, s) in self.bids.items():
            yield BUY, p, float(s)
        for p, (_, s) in self.asks.items():
            yield SELL, p, float(s)

    # ---- hash ------------------------------------------------------------------------

    def compute_hash(self) -> str | None:
        """The book hash per reference.md §3.6, or None while an input is unknown."""
        if self.min_order_size is None or self.neg_risk is None or self.tick_size is None:
            return None
        payload = {
            "market": self.condition_id,
            "asset_id": self.token_id,
            "timestamp": self.timestamp,
            "hash": "",
            "bids": [{"price": v[0], "size": v[1]} for _, v in sorted(self.bids.items())],
            "asks": [{"price": v[0], "size": v[1]} for _, v in sorted(self.asks.items(), reverse=True)],
            "min_order_size": self.min_order_size,
            "tick_size": self.tick_size,
            "neg_risk": self.neg_risk,
            "last_trade_price": self.last_trade_price,
        }
        return hashlib.sha1(_ENCODER.encode(payload)).hexdigest()

    def verify(self, expected: str | None) -> HashStatus:
        """Compare the local hash with the server's ``expected`` and record the outcome."""
        if expected:
            self.hash = expected
        computed = self.compute_hash() if expected else None
        if computed is None:
            status: HashStatus = "unknown"
        else:
            status = "verified" if computed == expected else "corrupted"
        if status != self.hash_status:
            self.hash_status = status
            self.meta_dirty = True
        return status

    # ---- persistence bookkeeping -----------------------------------------------------------

    def take_diff(self) -> BookDiff | None:
        """Levels changed since the last call (None when nothing did); resets the tracking."""
        if self._full:
            self._full = False
            self._dirty.clear()
            return BookDiff(self.token_id, True, list(self.levels()), [])
        if not self._dirty:
            return None
        upserts: list[tuple[str, float, float]] = []
        deletes: list[tuple[str, float]] = []
        for side, price in self._dirty:
            level = (self.bids if side == BUY else self.asks).get(price)
            if level is None:
                deletes.append((side, price))
            else:
                upserts.append((side, price, float(level[1])))
        self._dirty.clear()
        return BookDiff(self.token_id, False, upserts, deletes)

    def force_full_write(self) -> None:
        """Make the next diff a full replacement (after a failed write, say)."""
        self._full = True
        self._dirty.clear()
        self.meta_dirty = True

    @property
    def pending_write(self) -> bool:
        """True when the store has not seen the latest state of this book."""
        return self._full or bool(self._dirty) or self.meta_dirty


@dataclass
class BookRegistry:
    """``token_id → OrderBook`` of the tracked tokens, with each token's condition id."""

    books: dict[str, OrderBook] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)

    def track(self, token_id: str, condition_id: str = "") -> None:
        """Follow a token (its book appears with the first snapshot)."""
        if condition_id or token_id not in self.conditions:
            self.conditions[token_id] = condition_id

    def untrack(self, token_id: str) -> None:
        """Stop following a token and throw its book away."""
        self.conditions.pop(token_id, None)
        self.books.pop(token_id, None)

    def discard(self, token_id: str) -> OrderBook | None:
        """Throw a token's book away but keep following it (it is rebuilt from a snapshot)."""
        return self.books.pop(token_id, None)

    def is_tracked(self, token_id: str) -> bool:
        """True for a token the registry follows."""
        return token_id in self.conditions

    def get(self, token_id: str) -> OrderBook | None:
        """The token's book, or None before its first snapshot."""
        return self.books.get(token_id)

    def ensure(self, token_id: str, condition_id: str = "") -> OrderBook:
        """The token's book, created empty when missing."""
        book = self.books.get(token_id)
        if book is None:
            book = OrderBook(token_id, condition_id or self.conditions.get(token_id, ""))
            self.books[token_id] = book
        return book

    def condition_of(self, token_id: str) -> str:
        """The condition id of a tracked token ('' when unknown)."""
        return self.conditions.get(token_id, "")

    def tokens_of(self, condition_id: str) -> list[str]:
        """Tracked tokens of one market."""
        return [t for t, c in self.conditions.items() if c == condition_id]

    @property
    def tokens(self) -> set[str]:
        """Every tracked token id."""
        return set(self.conditions)

    def __len__(self) -> int:
        return len(self.books)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self.books
