"""Plain data objects of the simulated Polymarket world.

Only state lives here; generation is in ``generate.py``, evolution in
``world.py`` and the wire shapes in ``payloads.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ONE = Decimal(1)


def fmt_decimal(value: Decimal) -> str:
    """Format a price or size the way the CLOB does: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


@dataclass
class Tag:
    """A Gamma tag (``id`` is numeric text)."""

    id: str
    label: str
    slug: str
    created_at: str
    updated_at: str
    force_show: bool | None = None


@dataclass
class Sport:
    """A ``/sports`` row; ``tags`` is the raw comma string, quirks included."""

    id: int
    sport: str
    tags: str
    series: str
    created_at: str


@dataclass
class Book:
    """An order book in the YES token's perspective; the NO book is its mirror.

    A YES bid at ``p`` is a NO ask at ``1 - p`` with the same size, exactly as
    the real ``price_change`` messages mirror the two tokens.
    """

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    timestamp_ms: int = 0
    tick_size: str = "0.01"
    min_order_size: str = "5"

    def levels(self, token_index: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Served levels for one token: bids ascending, asks descending (best last)."""
        if token_index == 0:
            bids = sorted(self.bids.items())
            asks = sorted(self.asks.items(), reverse=True)
        else:
            bids = sorted(((ONE - p, s) for p, s in self.asks.items()))
            asks = sorted(((ONE - p, s) for p, s in self.bids.items()), reverse=True)
        return (
            [{"price": fmt_decimal(p), "size": fmt_decimal(s)} for p, s in bids],
            [{"price": fmt_decimal(p), "size": fmt_decimal(s)} for p, s in asks],
        )

    def best(self, token_index: int) -> tuple[Decimal | None, Decimal | None]:
        """Best bid and best ask of one token (``None`` when a side is empty)."""
        bid = max(self.bids) if self.bids else None
        ask = min(self.asks) if self.asks else None
        if token_index == 0:
            return bid, ask
        return (ONE - ask if ask is not None else None, ONE - bid if bid is not None else None)

    def copy(self) -> Book:
        """An independent copy."""
        return Book(dict(self.bids), dict(self.asks), self.timestamp_ms, self.tick_size, self.min_order_size)


@dataclass
class Market:
    """A binary market (two outcome tokens) with its Gamma and CLOB facets."""

    gamma_id: str
    condition_id: str
    question_id: str
    event_id: str
    slug: str
    question: str
    group_item_title: str
    outcomes: list[str]
    token_ids: list[str]
    price: float  # fair YES probability
    volume: float
    liquidity: float
    volume_24hr: float
    tick_size: str
    neg_risk_gamma: bool | None  # None: key absent on Gamma (legacy market)
    neg_risk_clob: bool
    neg_risk_market_id: str
    neg_risk_request_id: str
    enable_order_book: bool
    closed: bool
    closed_ts: float | None
    created_at: str
    updated_at: str
    start_date: str
    end_date: str
    accepting_orders_ts: str
    deploying_ts: str
    image: str
    token_ids_as_array: bool = False
    rfc3339_book_ts: bool = False
    oi_servable: bool = True
    sparse_prices: bool = False
    winner_index: int | None = None
    book: Book | None = None
    last_trade_price: list[str] = field(default_factory=lambda: ["", ""])
    last_trade_side: list[str] = field(default_factory=lambda: ["", ""])
    quirks: list[str] = field(default_factory=list)

    def token_index(self, token_id: str) -> int:
        """0 for the first outcome's token, 1 for the second."""
        return self.token_ids.index(token_id)


@dataclass
class Event:
    """A Gamma event holding one market or a neg-risk group of several."""

    id: str
    slug: str
    title: str
    description: str
    neg_risk: bool
    neg_risk_market_id: str
    created_at: str
    creation_date: str
    start_date: str
    end_date: str
    updated_at: str
    image: str
    tag_ids: list[str]
    market_ids: list[str]  # condition ids, in Gamma order
    comment_count: int
    closed: bool = False
    closed_ts: float | None = None


@dataclass
class Fill:
    """One row of the Data API trade tape (a taker or a maker fill)."""

    seq: int
    proxy_wallet: str
    side: str
    asset: str
    condition_id: str
    size: float
    price: float
    timestamp: int
    outcome: str
    outcome_index: int
    transaction_hash: str
    taker: bool
    name: str = ""
    pseudonym: str = ""

    @property
    def usd(self) -> float:
        """Notional in USDC (``size * price``), what ``filterType=CASH`` compares."""
        return self.size * self.price

    def sort_key(self) -> tuple[int, int]:
        """Newest-first order of the tape: timestamp, then insertion order."""
        return (self.timestamp, self.seq)


# ---- feed events the world emits to the WebSocket layer --------------------------


@dataclass(frozen=True)
class LevelChange:
    """One ``price_changes[]`` entry, hash and best prices already computed."""

    asset_id: str
    price: str
    size: str
    side: str
    hash: str
    best_bid: str
    best_ask: str


@dataclass(frozen=True)
class PriceChangeEvent:
    """A ``price_change`` for one market (changes for both tokens)."""

    condition_id: str
    timestamp_ms: int
    changes: tuple[LevelChange, ...]


@dataclass(frozen=True)
class BookEvent:
    """A full ``book`` snapshot of both tokens of a market, sent after trades."""

    condition_id: str


@dataclass(frozen=True)
class TradeEvent:
    """A ``last_trade_price`` for a taker fill."""

    fill: Fill
    timestamp_ms: int
    fee_rate_bps: str = "0"


@dataclass(frozen=True)
class TickSizeEvent:
    """A ``tick_size_change`` for both tokens of a market."""

    condition_id: str
    old_tick_size: str
    new_tick_size: str
    timestamp_ms: int


@dataclass(frozen=True)
class ResolvedEvent:
    """A ``market_resolved`` (custom feature) when a market closes."""

    condition_id: str
    timestamp_ms: int


FeedEvent = PriceChangeEvent | BookEvent | TradeEvent | TickSizeEvent | ResolvedEvent
