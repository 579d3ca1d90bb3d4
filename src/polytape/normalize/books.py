"""CLOB order-book payloads (REST ``/book`` and the market WebSocket) → typed messages.

Pure: no I/O, no clock. Wire schemas are msgspec structs mirroring the payloads
(reference.md §3.1 and §4.3); prices and sizes stay the server's strings, verbatim,
because the book hash is computed over them. What the structs accept:

- ``book`` (WS, and REST ``/book`` with ``min_order_size``/``neg_risk``);
- ``price_change`` in all three shapes: v2 ``price_changes[]`` (per-asset hash and
  best prices, since 2025-09-15), v1 ``changes[]`` with one hash, v0 (2024) one level
  at the top; :func:`level_changes` flattens them to :class:`LevelChange` items;
- ``last_trade_price``, ``tick_size_change``, ``best_bid_ask``, ``new_market``,
  ``market_resolved``;
- frames that are one object or an array of them, and the text frames ``PONG``,
  ``NO NEW ASSETS`` and ``INVALID OPERATION``.

Anything else becomes a :class:`Rejected` item with a reason; one bad message in an
array frame never costs the good ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from polytape.normalize import Rejected as Rejected  # re-exported: the one record

BUY, SELL = "BUY", "SELL"
TEXT_FRAMES = frozenset({"PONG", "NO NEW ASSETS", "INVALID OPERATION"})


class Level(msgspec.Struct, frozen=True):
    """One price level as served: strings kept verbatim."""

    price: str
    size: str


class BookMsg(msgspec.Struct, tag_field="event_type", tag="book"):
    """A full book: WS ``book`` or REST ``/book`` (which adds ``min_order_size``/``neg_risk``)."""

    market: str
    asset_id: str
    timestamp: str | int
    bids: list[Level]
    asks: list[Level]
    hash: str = ""
    tick_size: str | None = None
    last_trade_price: str | None = None
    min_order_size: str | None = None
    neg_risk: bool | None = None


class ChangeV2(msgspec.Struct):
    """One ``price_changes[]`` entry (v2): the hash is the book's after this change."""

    asset_id: str
    price: str
    size: str
    side: str
    hash: str | None = None
    best_bid: str | None = None
    best_ask: str | None = None


class ChangeV1(msgspec.Struct):
    """One ``changes[]`` entry (v1)."""

    price: str
    side: str
    size: str


class PriceChangeMsg(msgspec.Struct, tag_field="event_type", tag="price_change"):
    """``price_change`` in any of its three shapes (see the module notes)."""

    market: str
    timestamp: str | int
    price_changes: list[ChangeV2] | None = None
    changes: list[ChangeV1] | None = None
    asset_id: str | None = None
    hash: str | None = None
    price: str | None = None
    side: str | None = None
    size: str | None = None


class LastTradePriceMsg(msgspec.Struct, tag_field="event_type", tag="last_trade_price"):
    """A trade's price on one token (``side`` is the taker's)."""

    asset_id: str
    market: str
    price: str
    timestamp: str | int
    side: str = ""
    size: str = ""
    fee_rate_bps: str = ""
    transaction_hash: str | None = None


class TickSizeChangeMsg(msgspec.Struct, tag_field="event_type", tag="tick_size_change"):
    """The tick size of a token changed; the book must be rebuilt."""

    asset_id: str
    market: str
    old_tick_size: str
    new_tick_size: str
    timestamp: str | int


class BestBidAskMsg(msgspec.Struct, tag_field="event_type", tag="best_bid_ask"):
    """Top of book (custom feature)."""

    asset_id: str
    market: str
    best_bid: str
    best_ask: str
    timestamp: str | int
    spread: str = ""


class NewMarketMsg(msgspec.Struct, tag_field="event_type", tag="new_market"):
    """A market was created (custom feature); only what polytape may use is kept."""

    market: str
    timestamp: str | int
    assets_ids: list[str] = []
    question: str = ""
    slug: str = ""


class MarketResolvedMsg(msgspec.Struct, tag_field="event_type", tag="market_resolved"):
    """A market resolved (custom feature)."""

    market: str
    timestamp: str | int
    assets_ids: list[str] = []
    winning_asset_id: str = ""
    winning_outcome: str = ""


Message = (
    BookMsg
    | PriceChangeMsg
    | LastTradePriceMsg
    | TickSizeChangeMsg
    | BestBidAskMsg
    | NewMarketMsg
    | MarketResolvedMsg
)
EVENT_TYPES = frozenset(
    {"book", "price_change", "last_trade_price", "tick_size_change", "best_bid_ask", "new_market",
     "market_resolved"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TextFrame:
    """A plain-text server frame: ``PONG``, ``NO NEW ASSETS`` or ``INVALID OPERATION``."""

    text: str


Item = Message | TextFrame | Rejected

_FAST = msgspec.json.Decoder(list[Message] | Message)
_LONGEST_TEXT_FRAME = 64  # bytes: a longer frame is JSON or garbage, never PONG & co.
_ANY = msgspec.json.Decoder()


def decode_frame(frame: str | bytes) -> list[Item]:
    """Every item of one WebSocket frame, in order (never raises).

    The fast path decodes the whole frame into typed messages at once; a frame that
    fails it is taken apart item by item so the valid messages are kept.
    """
    if len(frame) <= _LONGEST_TEXT_FRAME:
        short = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if short.strip() in TEXT_FRAMES:
            return [TextFrame(short.strip())]
    try:
        fast = _FAST.decode(frame)  # str or bytes, no copy
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        pass  # invalid JSON or a bad item: sort it out below
    else:
        messages: list[Message] = fast if isinstance(fast, list) else [fast]
        for m in messages:
            if type(m) is PriceChangeMsg and not _valid(m):
                return [m if _valid(m) else _reject_invalid(m) for m in messages]
        return messages  # type: ignore[return-value]
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    stripped = text.strip()
    try:
        generic = _ANY.decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        kind = "text" if not stripped.startswith(("{", "[")) else "malformed_json"
        return [Rejected(kind, f"{kind}: {exc}", text)]
    return [convert_message(item) for item in (generic if isinstance(generic, list) else [generic])]


def convert_message(item: Any) -> Item:
    """One decoded JSON value → a typed message, or :class:`Rejected` saying why."""
    if not isinstance(item, dict):
        return Rejected("not_an_object", f"expected a JSON object, got {type(item).__name__}", item)
    event_type = item.get("event_type")
    if event_type not in EVENT_TYPES:
        return Rejected(f"unknown_event:{event_type}", f"unknown event_type {event_type!r}", item)
    try:
        msg: Message = msgspec.convert(item, Message)
    except msgspec.ValidationError as exc:
        return Rejected(f"invalid:{event_type}", f"invalid {event_type}: {exc}", item)
    return msg if _valid(msg) else _reject_invalid(msg)


def _valid(msg: Message) -> bool:
    """Shape checks msgspec cannot express: a ``price_change`` must carry some levels."""
    if isinstance(msg, PriceChangeMsg):
        return msg.price_changes is not None or msg.changes is not None or msg.price is not None
    return True


def _reject_invalid(msg: Message) -> Rejected:
    raw = msgspec.to_builtins(msg)
    return Rejected("invalid:price_change", "price_change without price_changes, changes or price", raw)


def parse_rest_book(raw: Any) -> BookMsg | Rejected:
    """A REST ``/book`` (or ``POST /books`` item) payload → :class:`BookMsg`."""
    if not isinstance(raw, dict):
        return Rejected("not_an_object", "a /book item must be a JSON object", raw)
    try:
        return msgspec.convert({**raw, "event_type": "book"}, BookMsg)
    except msgspec.ValidationError as exc:
        return Rejected("invalid:book", f"invalid /book payload: {exc}", raw)


# ---- price_change flattening ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelChange:
    """One level update for one token; ``hash`` is the book's after it (when known)."""

    asset_id: str
    side: str
    price: str
    size: str
    hash: str | None


def level_changes(msg: PriceChangeMsg) -> Sequence[ChangeV2 | LevelChange]:
    """The level updates of a ``price_change``, whatever its shape, in message order.

    Items have ``asset_id``, ``side``, ``price``, ``size`` and ``hash`` (v2 entries are
    returned as they are, for speed). In v1 the message's single hash belongs to the
    last change (the book after all of them).
    """
    if msg.price_changes is not None:
        return msg.price_changes
    asset = msg.asset_id or ""
    if msg.changes is not None:
        last = len(msg.changes) - 1
        return [
            LevelChange(asset, c.side, c.price, c.size, msg.hash if i == last else None)
            for i, c in enumerate(msg.changes)
        ]
    if msg.price is not None:
        return [LevelChange(asset, msg.side or "", msg.price, msg.size or "", msg.hash)]
    return []


# ---- numbers and times ------------------------------------------------------------------


def timestamp_ms(raw: str | int | float) -> int:
    """A CLOB timestamp → milliseconds since the epoch.

    Accepts ms-epoch strings or numbers (the WS and every REST capture) and RFC3339
    strings (what the seed says REST serves); ``ValueError`` otherwise.
    """
    if isinstance(raw, bool):
        raise ValueError(f"bad timestamp {raw!r}")
    if isinstance(raw, int | float):
        return _plausible_ms(int(raw))
    if raw.isdigit():
        return _plausible_ms(int(raw))
    text = raw.strip()
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


def _plausible_ms(value: int) -> int:
    if value < 10**11:  # seconds, not milliseconds (before 1973 as ms)
        value *= 1000
    if value >= 10**14:
        raise ValueError(f"timestamp {value} is not a millisecond epoch")
    return value


def ms_to_datetime(ms: int) -> datetime:
    """Milliseconds since the epoch → aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def parse_timestamp(raw: str | int | float) -> datetime:
    """A CLOB timestamp (ms-epoch or RFC3339) → aware UTC datetime."""
    return ms_to_datetime(timestamp_ms(raw))
