"""Data API trades (``/trades`` v1 and ``/v2/trades``) → ``trades`` rows (pure: no I/O, no clock).

Quirks handled here (reference.md §2.1-2.2, fixtures ``data_trades.json``, ``data_v2_trades.json``):

- v1 rows are camelCase (``proxyWallet``, ``asset``, ``conditionId``, ``transactionHash``),
  v2 rows snake_case (``proxy_wallet``, ``token_id``, ``condition_id``, ``transaction_hash``);
  both become the same record, with the same dedupe key for the same fill.
- ``size`` and ``price`` are JSON numbers (prices carry float noise like ``0.709999959``);
  ``timestamp`` is epoch seconds.
- ``transactionHash`` is not unique: one transaction carries several fills. The dedupe key
  is the fill's identity (:func:`dedupe_key`).

One bad trade never sinks a page: it becomes a :class:`Rejected` entry with a reason.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from polytape.errors import PayloadError
from polytape.normalize import Rejected

Feed = Literal["v1", "v2"]

SOURCE_V1 = "data_api"
SOURCE_V2 = "data_api_v2"
SOURCE_BACKFILL = "backfill"
REJECT_SOURCE = {"v1": "data:trades", "v2": "data:v2/trades"}

MAX_SIZE = 1e9
"""Default ceiling of a trade's size in shares (``POLYTAPE_TRADE_MAX_SIZE``)."""
MAX_USD = 1e8
"""Default ceiling of a trade's USD value (``POLYTAPE_TRADE_MAX_USD``)."""
FINEST_TICK = 0.0001
"""Polymarket's finest tick: no trade is priced below it or above 1 minus it."""
"""Shares in one fill above this are absurd (more than the whole market could hold)."""
EARLIEST_TS = 1_577_836_800  # 2020-01-01: Polymarket's CLOB tape starts later than this
FUTURE_SLACK = timedelta(days=1)
"""How far past ``now`` a trade time may be before it counts as absurd (clock skew)."""

# field name in each feed: (v1, v2)
_FIELDS: dict[str, tuple[str, str]] = {
    "wallet": ("proxyWallet", "proxy_wallet"),
    "token_id": ("asset", "token_id"),
    "condition_id": ("conditionId", "condition_id"),
    "transaction_hash": ("transactionHash", "transaction_hash"),
    "outcome_index": ("outcomeIndex", "outcome_index"),
    "side": ("side", "side"),
    "size": ("size", "size"),
    "price": ("price", "price"),
    "timestamp": ("timestamp", "timestamp"),
    "outcome": ("outcome", "outcome"),
}


class TradeRecord(TypedDict):
    """A row of ``trades`` (without the surrogate ``id``)."""

    dedupe_key: str
    transaction_hash: str | None
    wallet: str
    condition_id: str
    token_id: str
    side: str
    outcome: str | None
    outcome_index: int | None
    size: float
    price: float
    usd_value: float
    trade_ts: datetime
    source: str
    ingested_at: datetime


class TradePayloadError(PayloadError, ValueError):
    """One trade is malformed; the message is the reason stored with it."""


@dataclass
class TradesPage:
    """What one page of trades becomes: rows for ``schema.trades`` and the rejected items."""

    rows: list[TradeRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


# ---- scalar parsers ---------------------------------------------------------------------


def _text(raw: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise TradePayloadError(f"missing {name}")
        return None
    if not isinstance(value, str):
        raise TradePayloadError(f"{name} is not a string: {value!r}")
    return value.strip()


def _positive(raw: Mapping[str, Any], name: str, upper: float) -> float:
    """A finite JSON number in (0, upper]; strings, booleans and absurd values are errors."""
    value = raw.get(name)
    if value is None:
        raise TradePayloadError(f"missing {name}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TradePayloadError(f"{name} is not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0 or number > upper:
        raise TradePayloadError(f"{name} is absurd: {value!r}")
    return number


def parse_trade_ts(value: Any, now: datetime) -> int:
    """Epoch seconds of a trade (JSON integer, or an integral float) within sane bounds."""
    if value is None:
        raise TradePayloadError("missing timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TradePayloadError(f"timestamp is not a number: {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise TradePayloadError(f"timestamp is not whole seconds: {value!r}")
    ts = int(value)
    if ts < EARLIEST_TS or ts > (now + FUTURE_SLACK).timestamp():
        raise TradePayloadError(f"timestamp is absurd (epoch seconds expected): {value!r}")
    return ts


def _outcome_index(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TradePayloadError(f"outcome index is not a small integer: {value!r}")
    return value


def canonical_number(value: float) -> str:
    """The one text form of a size or price in keys: the shortest repr of the float."""
    return repr(float(value))


def dedupe_key(
    *,
    transaction_hash: str | None,
    wallet: str,
    condition_id: str,
    token_id: str,
    side: str,
    size: float,
    price: float,
    trade_ts: int,
) -> str:
    """The fill's identity (architecture.md): hash + token + wallet + side + size + price + time.

    Without a transaction hash, the seed's tuple (wallet, condition_id, token_id, side,
    trade_ts, size, price). Text is canonicalised (lower-case hex, upper-case side, floats
    by repr) so the same fill from v1 and v2 gets the same key; the key is a 128-bit digest.
    """
    size_text, price_text = canonical_number(size), canonical_number(price)
    wallet, side = wallet.lower(), side.upper()
    if transaction_hash:
        parts = ["tx", transaction_hash.lower(), token_id, wallet, side, size_text, price_text, str(trade_ts)]
    else:
        parts = ["fill", wallet, condition_id.lower(), token_id, side, str(trade_ts), size_text, price_text]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


# ---- one trade ----------------------------------------------------------------------------


def _price(raw: Mapping[str, Any], name: str) -> float:
    """A price on the tick grid's range: [0.0001, 0.9999], the finest tick from either end.

    Not every price is a multiple of a tick: the v2 feed's rows are fills averaged over
    several makers (0.2972581967 in the recorded fixture), so the range is what is checked.
    """
    price = _positive(raw, name, 1.0)
    if price < FINEST_TICK * (1 - 1e-9) or price > (1 - FINEST_TICK) * (1 + 1e-12):
        raise TradePayloadError(
            f"{name} is absurd: {raw.get(name)!r} (outside the tick grid's range 0.0001..0.9999)"
        )
    return price


@dataclass(frozen=True)
class TradeLimits:
    """Ceilings a plausible trade stays under (settable: ``POLYTAPE_TRADE_MAX_*``)."""

    max_size: float = MAX_SIZE
    max_usd: float = MAX_USD


def _normalize(
    raw: Any, now: datetime, source: str, feed: Feed, limits: TradeLimits = TradeLimits()
) -> TradeRecord:
    if not isinstance(raw, Mapping):
        raise TradePayloadError(f"trade is not an object: {type(raw).__name__}")
    col = 0 if feed == "v1" else 1
    names = {key: pair[col] for key, pair in _FIELDS.items()}
    wallet = _text(raw, names["wallet"])
    token_id = _text(raw, names["token_id"])
    condition_id = _text(raw, names["condition_id"])
    side = (_text(raw, names["side"]) or "").upper()
    assert wallet is not None and token_id is not None and condition_id is not None
    if side not in ("BUY", "SELL"):
        raise TradePayloadError(f"side is not BUY or SELL: {raw.get(names['side'])!r}")
    size = _positive(raw, names["size"], limits.max_size)
    price = _price(raw, names["price"])
    if size * price > limits.max_usd:
        raise TradePayloadError(f"usd value is absurd: {size * price:.6g} over {limits.max_usd:g}")
    ts = parse_trade_ts(raw.get(names["timestamp"]), now)
    tx_hash = _text(raw, names["transaction_hash"], required=False)
    return TradeRecord(
        dedupe_key=dedupe_key(
            transaction_hash=tx_hash,
            wallet=wallet,
            condition_id=condition_id,
            token_id=token_id,
            side=side,
            size=size,
            price=price,
            trade_ts=ts,
        ),
        transaction_hash=tx_hash.lower() if tx_hash else None,
        wallet=wallet.lower(),
        condition_id=condition_id.lower(),
        token_id=token_id,
        side=side,
        outcome=_text(raw, names["outcome"], required=False),
        outcome_index=_outcome_index(raw.get(names["outcome_index"])),
        size=size,
        price=price,
        usd_value=size * price,
        trade_ts=datetime.fromtimestamp(ts, UTC),
        source=source,
        ingested_at=now,
    )


def normalize_trade_v1(raw: Any, now: datetime, source: str = SOURCE_V1) -> TradeRecord:
    """One ``/trades`` row → a ``trades`` record; raises :class:`TradePayloadError`."""
    return _normalize(raw, now, source, "v1")


def normalize_trade_v2(raw: Any, now: datetime, source: str = SOURCE_V2) -> TradeRecord:
    """One ``/v2/trades`` row (snake_case) → a ``trades`` record; raises :class:`TradePayloadError`."""
    return _normalize(raw, now, source, "v2")


def normalize_trades(
    items: Iterable[Any],
    now: datetime,
    source: str,
    feed: Feed = "v1",
    limits: TradeLimits = TradeLimits(),
) -> TradesPage:
    """A page of trades → rows and rejected items; never raises on one bad item.

    Rows are unique by ``dedupe_key`` within the page (a repeated fill is kept once).
    """
    page = TradesPage()
    seen: set[str] = set()
    for raw in items:
        try:
            record = _normalize(raw, now, source, feed, limits)
        except TradePayloadError as exc:
            page.rejected.append(Rejected(REJECT_SOURCE[feed], str(exc), raw))
            continue
        if record["dedupe_key"] not in seen:
            seen.add(record["dedupe_key"])
            page.rows.append(record)
    return page
