"""Plain records the signal rules read and write: no I/O, no clock.

Prices are the traded token's price in [0, 1]; sizes are shares; times are
aware UTC datetimes. A book's levels are ``(price, size)`` pairs, best first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

LARGE_TRADE = "large_trade"
WALLET_ACCUMULATION = "wallet_accumulation"
COMPLEMENT_ARB = "complement_arb"
NEG_RISK_ARB = "neg_risk_arb"
PRICE_MOVE = "price_move"
OI_CHANGE = "oi_change"
SIGNAL_TYPES = (LARGE_TRADE, WALLET_ACCUMULATION, COMPLEMENT_ARB, NEG_RISK_ARB, PRICE_MOVE, OI_CHANGE)
BOOK_TYPES = (COMPLEMENT_ARB, NEG_RISK_ARB)

Level = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Signal:
    """One detected signal: a ``signal_events`` row plus its cooldown ``subject``.

    ``subject`` names what the cooldown is kept per (a market, an event, or a
    wallet on a market); it is stored in the payload so a restart finds it.
    """

    signal_type: str
    condition_id: str | None
    token_id: str | None
    detected_at: datetime
    score: float
    payload: dict[str, Any]
    dedupe_key: str
    subject: str

    def row(self) -> dict[str, Any]:
        """The ``signal_events`` row (the subject travels in the payload)."""
        return {
            "dedupe_key": self.dedupe_key,
            "signal_type": self.signal_type,
            "condition_id": self.condition_id,
            "token_id": self.token_id,
            "detected_at": self.detected_at,
            "score": self.score,
            "payload": {**self.payload, "subject": self.subject},
        }


@dataclass(frozen=True, slots=True)
class TradeIn:
    """A stored taker trade, as the rules see it (``question`` from ``markets``)."""

    id: int
    dedupe_key: str
    transaction_hash: str | None
    wallet: str | None
    condition_id: str
    token_id: str | None
    side: str | None
    outcome: str | None
    outcome_index: int | None
    size: float
    price: float
    usd_value: float
    trade_ts: datetime
    question: str | None = None

    @property
    def yes_price(self) -> float:
        """The trade's price seen from the first outcome (a NO fill at p is YES at 1 - p)."""
        return 1.0 - self.price if self.outcome_index == 1 else self.price


@dataclass(frozen=True, slots=True)
class BookView:
    """A token's current book: levels best first, and when it was last known current."""

    token_id: str
    condition_id: str | None
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    updated_at: datetime

    @property
    def best_bid(self) -> float | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> float | None:
        return self.asks[0][0] if self.asks else None

    @property
    def mid(self) -> float | None:
        """Midpoint of the best bid and ask, when both exist."""
        if self.best_bid is None or self.best_ask is None:
            return None
        return (self.best_bid + self.best_ask) / 2

    def age(self, now: datetime) -> float:
        return (now - self.updated_at).total_seconds()

    def is_crossed(self) -> bool:
        """Bid at or above ask: the book is wrong or mid-update, never evidence."""
        return self.best_bid is not None and self.best_ask is not None and self.best_bid >= self.best_ask

    def is_evidence(self, now: datetime, max_age_seconds: float) -> bool:
        """Fresh (no older than ``max_age_seconds``) and not crossed."""
        return self.age(now) <= max_age_seconds and not self.is_crossed()


@dataclass(frozen=True, slots=True)
class BinaryMarket:
    """A two-outcome market and the books of its tokens (first outcome = YES)."""

    condition_id: str
    question: str | None
    yes: BookView | None
    no: BookView | None


@dataclass(frozen=True, slots=True)
class NegRiskEvent:
    """A negative-risk event: one YES book per outcome market (None when not held)."""

    event_id: str
    title: str | None
    legs: Sequence[tuple[str, str | None, BookView | None]]  # (condition_id, question, YES book)


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One observation of a market's first-outcome price."""

    ts: datetime
    price: float


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """A market's price observations of one basis (``mid`` or ``last_trade``), any order."""

    condition_id: str
    basis: str
    points: Sequence[PricePoint]
    question: str | None = None


@dataclass(frozen=True, slots=True)
class OiSnapshot:
    """One ``market_metrics_ts`` open-interest value."""

    ts: datetime
    open_interest: float


@dataclass(frozen=True, slots=True)
class Prior:
    """The newest stored signal of one (type, subject), for the cooldown."""

    detected_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Every threshold of the rules; built from the ``signal_*`` settings."""

    large_trade_usd: float = 10_000.0
    accumulation_usd: float = 50_000.0
    accumulation_window: timedelta = timedelta(minutes=60)
    arb_min_edge: float = 0.01
    book_max_age_seconds: float = 30.0
    move_points: float = 0.10
    move_window: timedelta = timedelta(minutes=30)
    oi_change_pct: float = 10.0
    oi_change_usd: float = 50_000.0
    cooldown: timedelta = timedelta(minutes=30)
    trade_horizon: timedelta = timedelta(hours=1)
    """Trades older than this when first seen (a backfill, a long outage) are not signalled."""

    @classmethod
    def from_settings(cls, settings: Any) -> RuleConfig:
        """Thresholds from a :class:`polytape.config.Settings`."""
        return cls(
            large_trade_usd=settings.signal_large_trade_usd,
            accumulation_usd=settings.signal_accumulation_usd,
            accumulation_window=timedelta(minutes=settings.signal_accumulation_window_minutes),
            arb_min_edge=settings.signal_arb_min_edge,
            book_max_age_seconds=settings.signal_book_max_age_seconds,
            move_points=settings.signal_move_points,
            move_window=timedelta(minutes=settings.signal_move_window_minutes),
            oi_change_pct=settings.signal_oi_change_pct,
            oi_change_usd=settings.signal_oi_change_usd,
            cooldown=timedelta(minutes=settings.signal_cooldown_minutes),
            trade_horizon=max(
                timedelta(minutes=settings.signal_trade_horizon_minutes),
                timedelta(minutes=settings.signal_accumulation_window_minutes),
                timedelta(minutes=settings.signal_move_window_minutes),
            ),
        )


def bucket(when: datetime, length: timedelta) -> int:
    """Index of the ``length``-long window holding ``when`` (1 s windows when ``length`` is 0)."""
    seconds = max(length.total_seconds(), 1.0)
    return math.floor(when.timestamp() / seconds)


def clean(value: float, digits: int = 9) -> float:
    """Round away float noise (0.1 + 0.2) before comparing with a threshold."""
    return round(value, digits)
