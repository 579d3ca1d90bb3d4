"""The in-memory order book of each token: snapshots, deltas, top of book, hash, diffs.

Pure: no I/O and no clock (callers pass times in). Levels are keyed by their price as
a float and keep the server's price and size strings verbatim, because the book hash
(reference.md §3.6) is computed over those strings in the server's order: bids
ascending, asks descending.

The hash is kept cheap for the whole venue: each level is held as its serialized JSON
fragment (``{"price":"…","size":"…"}``, the texts read back from it when needed) and
each side keeps its prices sorted (updated per change by bisection), so a hash is a
join of the fragments plus a SHA-1, never a rebuild of the book. A level costs a dict
entry, its float key (shared with the sorted list) and one string: about 150 bytes,
which keeps the 1.8 M levels of the whole venue well under a gigabyte.

Verification can be deferred: :meth:`OrderBook.expect` records the server's newest hash
for the current state and :meth:`OrderBook.settle` compares it later (the keeper does
so at least once per ``verify_within`` and before a book is persisted).
:attr:`OrderBook.verified` says whether the *current* state was checked and matched.

:class:`OrderBook` also remembers which levels changed since the store last saw it
(:meth:`OrderBook.take_diff`), so the feed persists only changed levels.
:class:`BookRegistry` holds the books of every tracked token; other components (the
signal engine) read it from ``ctx.runtime.books``.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from polytape.normalize.books import BUY, SELL, BookMsg, ms_to_datetime, timestamp_ms

HashStatus = Literal["verified", "unknown", "corrupted"]
LevelMap = dict[float, str]  # price -> the level's JSON fragment (holds both texts verbatim)

_ENCODER = msgspec.json.Encoder()
_INF = math.inf


def _plain(text: str) -> bool:
    """True when JSON writes ``text`` unescaped (no control character, quote or backslash)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _json_str(text: str) -> str:
    """``text`` as a JSON string literal, exactly as msgspec (and ``json.dumps``) write it."""
    if _plain(text):
        return '"' + text + '"'
    return _ENCODER.encode(text).decode()


def _fragment(price: str, size: str) -> str:
    """One level's part of the hash payload: ``{"price":"…","size":"…"}``.

    Both texts parsed as floats, so neither holds a quote or a backslash: only a
    control character (whitespace ``float`` skips) needs the escaping path.
    """
    if (price + size).isprintable():
        return f'{{"price":"{price}","size":"{size}"}}'
    return '{"price":' + _json_str(price) + ',"size":' + _json_str(size) + "}"


_SIZE_AT = len('","size":"')


def level_texts(fragment: str) -> tuple[str, str]:
    """A level's price and size texts, as served, from its fragment."""
    if "\\" in fragment:  # an escaped text (a control character float() skipped)
        decoded = msgspec.json.decode(fragment)
        return decoded["price"], decoded["size"]
    cut = fragment.index('","size":"')
    return fragment[10:cut], fragment[cut + _SIZE_AT : -2]


def level_size(fragment: str) -> float:
    """A level's size, from its fragment."""
    return float(level_texts(fragment)[1])


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
    """A side of a snapshot as ``price -> fragment`` (the last of a repeated price wins)."""
    out: LevelMap = {}
    for lvl in levels:
        price_text: str = lvl.price  # type: ignore[attr-defined]
        size_text: str = lvl.size  # type: ignore[attr-defined]
        price = float(price_text)
        size = float(size_text)
        if not (0.0 <= price <= 1.0) or not (0.0 <= size < _INF):
            raise ValueError(f"absurd level price={price_text!r} size={size_text!r}")
        if size > 0.0:
            out[price] = _fragment(price_text, size_text)
        elif price in out:  # a later zero for a repeated price removes it
            del out[price]
    return out


class OrderBook:
    """The current book of one token (see the module notes)."""

    __slots__ = (
        "_akeys",
        "_bkeys",
        "_checked",
        "_dirty",
        "_full",
        "_pending",
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
        # each side's prices ascending (the dict's own key objects): best bid last, best ask first
        self._bkeys: list[float] = []
        self._akeys: list[float] = []
        self._pending = False  # ``hash`` is the server's hash of the current state, unchecked
        self._checked = False  # ``hash_status`` is the outcome for the current state

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
        self._bkeys, self._akeys = sorted(bids), sorted(asks)
        self._pending = self._checked = False
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
        if not (0.0 <= p <= 1.0) or not (0.0 <= s < _INF):
            raise ValueError(f"absurd level price={price!r} size={size!r}")
        if side == BUY:
            levels, keys = self.bids, self._bkeys
        elif side == SELL:
            levels, keys = self.asks, self._akeys
        else:
            raise ValueError(f"unknown side {side!r}")
        if s > 0.0:
            if p not in levels:
                keys.insert(bisect_left(keys, p), p)
            levels[p] = _fragment(price, size)
        elif p in levels:
            del levels[p], keys[bisect_left(keys, p)]
        self._pending = self._checked = False
        if not self._full:
            self._dirty.add((side, p))
        if ts is not None and ts != self.timestamp:
            self.timestamp_ms = timestamp_ms(ts) if ts_ms is None else ts_ms
            self.timestamp = str(ts)
        self.meta_dirty = True

    def set_last_trade_price(self, price: str) -> None:
        """Track ``last_trade_price`` (a hash input).

        Settle a pending check first (:meth:`settle`): the hash it awaits was computed
        with the old price.
        """
        if price != self.last_trade_price:
            self.last_trade_price = price
            self.meta_dirty = True
            self._pending = self._checked = False

    # ---- reading ---------------------------------------------------------------------

    @property
    def best_bid(self) -> float | None:
        """Highest bid price, or None when there are no bids."""
        keys = self._bkeys
        return keys[-1] if keys else None

    @property
    def best_ask(self) -> float | None:
        """Lowest ask price, or None when there are no asks."""
        keys = self._akeys
        return keys[0] if keys else None

    def top_is(self, bid: float, ask: float) -> bool:
        """True when the best bid and ask are these (0 standing for an empty side)."""
        bids, asks = self._bkeys, self._akeys
        return bid == (bids[-1] if bids else 0.0) and ask == (asks[0] if asks else 0.0)

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
        bk, ak = self._bkeys, self._akeys
        bids = bk[::-1] if n is None else bk[-1 : -n - 1 : -1]
        asks = ak if n is None else ak[:n]
        b, a = self.bids, self.asks
        return [(p, level_size(b[p])) for p in bids], [(p, level_size(a[p])) for p in asks]

    def levels(self) -> Iterator[tuple[str, float, float]]:
        """Every level as ``(side, price, size)``."""
        for p, frag in self.bids.items():
            yield BUY, p, level_size(frag)
        for p, frag in self.asks.items():
            yield SELL, p, level_size(frag)

    def side_texts(self, side: str) -> list[tuple[str, str]]:
        """One side's levels as served ``(price, size)`` texts, in hash order (bids ascending,
        asks descending)."""
        if side == BUY:
            return [level_texts(self.bids[p]) for p in self._bkeys]
        return [level_texts(self.asks[p]) for p in reversed(self._akeys)]

    # ---- hash ------------------------------------------------------------------------

    def compute_hash(self) -> str | None:
        """The book hash per reference.md §3.6, or None while an input is unknown.

        A join of the kept level fragments in server order (bids ascending, asks
        descending) between the serialized scalar fields, then one SHA-1.
        """
        if self.min_order_size is None or self.neg_risk is None or self.tick_size is None:
            return None
        text = "".join(
            (
                '{"market":',
                _json_str(self.condition_id),
                ',"asset_id":',
                _json_str(self.token_id),
                ',"timestamp":',
                _json_str(self.timestamp),
                ',"hash":"","bids":[',
                ",".join(map(self.bids.__getitem__, self._bkeys)),
                '],"asks":[',
                ",".join(map(self.asks.__getitem__, reversed(self._akeys))),
                '],"min_order_size":',
                _json_str(self.min_order_size),
                ',"tick_size":',
                _json_str(self.tick_size),
                ',"neg_risk":',
                "true" if self.neg_risk else "false",
                ',"last_trade_price":',
                _json_str(self.last_trade_price),
                "}",
            )
        )
        return hashlib.sha1(text.encode()).hexdigest()

    def verify(self, expected: str | None) -> HashStatus:
        """Compare the local hash with the server's ``expected`` now and record the outcome."""
        if expected:
            self.hash = expected
        computed = self.compute_hash() if expected else None
        if computed is None:
            status: HashStatus = "unknown"
        else:
            status = "verified" if computed == expected else "corrupted"
        self._pending = False
        self._checked = True
        if status != self.hash_status:
            self.hash_status = status
            self.meta_dirty = True
        return status

    def expect(self, expected: str) -> None:
        """Record the server's hash of the current state, to be checked by :meth:`settle`."""
        self.hash = expected
        self._pending = True
        self._checked = False

    @property
    def check_pending(self) -> bool:
        """True when an expected hash of the current state awaits :meth:`settle`."""
        return self._pending

    def settle(self) -> HashStatus | None:
        """Run the pending check (None when there is none)."""
        return self.verify(self.hash) if self._pending else None

    @property
    def checked_status(self) -> HashStatus:
        """``hash_status`` if it is the outcome for the current state, else ``"unknown"``."""
        return self.hash_status if self._checked else "unknown"

    @property
    def verified(self) -> bool:
        """True when the current state was checked against the server's hash and matched."""
        return self._checked and self.hash_status == "verified"

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
                upserts.append((side, price, level_size(level)))
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
    generation: int = 0  # moves whenever a token or a book enters or leaves

    def track(self, token_id: str, condition_id: str = "") -> None:
        """Follow a token (its book appears with the first snapshot)."""
        if token_id not in self.conditions:
            self.generation += 1
        if condition_id or token_id not in self.conditions:
            self.conditions[token_id] = condition_id

    def untrack(self, token_id: str) -> None:
        """Stop following a token and throw its book away."""
        self.generation += 1
        self.conditions.pop(token_id, None)
        self.books.pop(token_id, None)

    def discard(self, token_id: str) -> OrderBook | None:
        """Throw a token's book away but keep following it (it is rebuilt from a snapshot)."""
        self.generation += 1
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
            self.generation += 1
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
