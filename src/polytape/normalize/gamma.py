"""Gamma events, markets, tags and sports → store rows (pure: no I/O, no clock).

Quirks handled here (reference.md §1, fixtures ``gamma_*.json``):

- ``outcomes`` / ``outcomePrices`` / ``clobTokenIds`` are JSON-encoded strings (token ids
  may also come as a real array); prices become numbers.
- Market ``volume``/``liquidity`` are numeric strings, ``volumeNum``/``liquidityNum``
  numbers: the numbers win. Event-level ``volume``/``liquidity`` are numbers.
- Dates come with 0/3/6 fraction digits and ``Z``, as ``2026-03-19 23:20:15+00`` or as a
  bare date; all become aware UTC datetimes.
- ``active`` stays true on a closed market: ``closed`` is the truth, so a stored market
  is ``active`` only when Gamma says active *and* not closed (same for ``accepting_orders``).
- ``negRisk`` may be absent (legacy markets): stored as unknown (NULL, no source).
- Nested markets carry no tags; they inherit their event's tags in ``market_tags``.

One bad event or market never sinks a page: it becomes a :class:`Rejected` entry with a
reason, and everything else on the page is kept.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

import msgspec

from polytape.errors import PayloadError
from polytape.normalize import Rejected

SOURCE_EVENT = "gamma:event"
SOURCE_MARKET = "gamma:market"
SOURCE_TAG = "gamma:tag"

_decode = msgspec.json.decode


class EventRecord(TypedDict):
    """A row of ``events``."""

    event_id: str
    slug: str | None
    title: str | None
    active: bool | None
    closed: bool | None
    neg_risk: bool | None
    neg_risk_market_id: str | None
    start_date: datetime | None
    end_date: datetime | None
    volume: float | None
    liquidity: float | None
    first_seen_at: datetime
    updated_at: datetime


class MarketRecord(TypedDict):
    """A row of ``markets`` (``neg_risk_source`` is ``gamma`` when Gamma gave ``negRisk``)."""

    condition_id: str
    gamma_market_id: str
    event_id: str | None
    question_id: str | None
    slug: str | None
    question: str | None
    outcomes: list[str]
    outcome_prices: list[float] | None
    clob_token_ids: list[str]
    gamma_volume: float | None
    gamma_liquidity: float | None
    neg_risk: bool | None
    neg_risk_source: str | None
    neg_risk_market_id: str | None
    enable_order_book: bool | None
    active: bool | None
    closed: bool | None
    accepting_orders: bool | None
    tick_size: float | None
    min_order_size: float | None
    end_date: datetime | None
    first_seen_at: datetime
    updated_at: datetime


class TokenRecord(TypedDict):
    """A row of ``market_tokens``: one outcome token and its place in ``outcomes``."""

    token_id: str
    condition_id: str
    outcome: str
    outcome_index: int


class TagRecord(TypedDict):
    """A row of ``tags`` (``is_sport`` is decided by the sports mapping, not here)."""

    tag_id: str
    label: str | None
    slug: str | None
    updated_at: datetime


@dataclass
class NormalizedPage:
    """Everything one page of Gamma events becomes; ``rejected`` holds the bad items."""

    events: list[EventRecord] = field(default_factory=list)
    markets: list[MarketRecord] = field(default_factory=list)
    tokens: list[TokenRecord] = field(default_factory=list)
    tags: list[TagRecord] = field(default_factory=list)
    event_tags: list[dict[str, str]] = field(default_factory=list)
    market_tags: list[dict[str, str]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: int = 0
    """Markets left out on purpose (not yet deployed: no ``conditionId``)."""


class GammaPayloadError(PayloadError, ValueError):
    """One item is malformed; the message is the reason stored with it."""


# ---- scalar parsers ---------------------------------------------------------------------


def parse_gamma_datetime(value: Any) -> datetime | None:
    """Any Gamma date form → aware UTC datetime; None/empty → None; junk raises."""
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise GammaPayloadError(f"date is not a string: {value!r}")
    return _parse_date_text(value)


@functools.lru_cache(maxsize=8192)
def _parse_date_text(value: str) -> datetime:
    """Cached: an event's dates repeat on each of its markets and on every sync."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise GammaPayloadError(f"bad date {value!r}") from None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _number(value: Any, name: str) -> float | None:
    """A finite, non-negative number from a JSON number or numeric string (None if absent)."""
    kind = type(value)
    if kind is float or kind is int:  # the common case first: this runs ~8 times per market
        number = float(value)
    elif value is None or value == "":
        return None
    elif kind is str:
        try:
            number = float(value)
        except ValueError:
            raise GammaPayloadError(f"{name} is not a number: {value!r}") from None
    else:
        raise GammaPayloadError(f"{name} has type {kind.__name__}")
    if not 0.0 <= number < math.inf:  # also false for NaN
        raise GammaPayloadError(f"{name} is absurd: {value!r}")
    return number


def _preferred_number(raw: Mapping[str, Any], numeric: str, text: str) -> float | None:
    """``volumeNum``-style number when present, else the ``volume``-style string."""
    value = _number(raw.get(numeric), numeric)
    return value if value is not None else _number(raw.get(text), text)


def _bool(value: Any, name: str) -> bool | None:
    if value is True or value is False or value is None:
        return value
    raise GammaPayloadError(f"{name} is not a boolean: {value!r}")


def _text(value: Any, name: str) -> str | None:
    if type(value) is str or value is None:
        return value or None
    raise GammaPayloadError(f"{name} is not a string: {value!r}")


def _id(value: Any, name: str) -> str:
    """A required id (Gamma serves numeric text; plain integers are accepted)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise GammaPayloadError(f"missing or bad {name}: {value!r}")


_HEX_ID = re.compile(r"0x[0-9a-fA-F]+")
_decode_strings = msgspec.json.Decoder(list[str]).decode
_decode_numbers = msgspec.json.Decoder(list[float], strict=False).decode  # "0.505" → 0.505


def _is_hex_id(value: str) -> bool:
    """``0x`` followed by hex digits (condition ids are ``0x`` + 64 hex)."""
    return _HEX_ID.fullmatch(value) is not None


def json_list(value: Any, name: str) -> list[Any] | None:
    """A list given as a JSON-encoded string or as an array (None/empty → None)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = _decode(value)
        except (msgspec.DecodeError, RecursionError):
            raise GammaPayloadError(f"{name} is not valid JSON: {value[:80]!r}") from None
    if not isinstance(value, list):
        raise GammaPayloadError(f"{name} is not a list")
    return value


def _string_list(value: Any, name: str) -> list[str] | None:
    """Non-empty strings from a JSON-encoded string (the wire form) or an array."""
    items: list[Any] | None
    if type(value) is str and value:
        try:
            items = _decode_strings(value)
        except msgspec.ValidationError:
            raise GammaPayloadError(f"{name} holds a non-string item: {value[:80]!r}") from None
        except (msgspec.DecodeError, RecursionError):
            raise GammaPayloadError(f"{name} is not valid JSON: {value[:80]!r}") from None
    else:
        items = json_list(value, name)
        if items is None:
            return None
        items = [str(i) if type(i) is int else i for i in items]
        if not all(type(i) is str for i in items):
            raise GammaPayloadError(f"{name} holds a non-string item: {value!r}")
    if not all(items):
        raise GammaPayloadError(f"{name} holds an empty item: {value!r}")
    return items


def _prices(value: Any, expected: int) -> list[float] | None:
    """``outcomePrices`` as numbers in [0, 1], one per outcome."""
    if value is None or value == "":
        return None
    try:
        if type(value) is str:
            prices = _decode_numbers(value)
        else:
            prices = [n if n is not None else math.nan for n in (_number(p, "outcomePrices") for p in value)]
    except (msgspec.ValidationError, GammaPayloadError, TypeError):
        raise GammaPayloadError(f"outcomePrices is not a list of numbers: {str(value)[:80]!r}") from None
    except (msgspec.DecodeError, RecursionError):
        raise GammaPayloadError(f"outcomePrices is not valid JSON: {value[:80]!r}") from None
    if len(prices) != expected:
        raise GammaPayloadError(f"outcomePrices has {len(prices)} items for {expected} outcomes")
    if not all(0.0 <= p <= 1.0 for p in prices):  # false for NaN too
        raise GammaPayloadError(f"outcomePrices is absurd: {value!r}")
    return prices


# ---- items ------------------------------------------------------------------------------------


def normalize_event(raw: Mapping[str, Any], now: datetime) -> EventRecord:
    """One Gamma event (without its markets); raises :class:`GammaPayloadError` if malformed."""
    if not isinstance(raw, Mapping):
        raise GammaPayloadError("event is not an object")
    return {
        "event_id": _id(raw.get("id"), "id"),
        "slug": _text(raw.get("slug"), "slug"),
        "title": _text(raw.get("title"), "title"),
        "active": _bool(raw.get("active"), "active"),
        "closed": _bool(raw.get("closed"), "closed"),
        "neg_risk": _bool(raw.get("negRisk"), "negRisk"),
        "neg_risk_market_id": _text(raw.get("negRiskMarketID"), "negRiskMarketID"),
        "start_date": parse_gamma_datetime(raw.get("startDate")),
        "end_date": parse_gamma_datetime(raw.get("endDate")),
        "volume": _number(raw.get("volume"), "volume"),
        "liquidity": _number(raw.get("liquidity"), "liquidity"),
        "first_seen_at": now,
        "updated_at": now,
    }


def normalize_market(raw: Mapping[str, Any], event_id: str | None, now: datetime) -> MarketRecord:
    """One Gamma market; raises :class:`GammaPayloadError` if malformed."""
    if not isinstance(raw, Mapping):
        raise GammaPayloadError("market is not an object")
    condition_id = raw.get("conditionId")
    if not isinstance(condition_id, str) or not _is_hex_id(condition_id):
        raise GammaPayloadError(f"missing or bad conditionId: {condition_id!r}")
    outcomes = _string_list(raw.get("outcomes"), "outcomes")
    if not outcomes:
        raise GammaPayloadError("missing outcomes")
    token_ids = _string_list(raw.get("clobTokenIds"), "clobTokenIds") or []
    if token_ids and len(token_ids) != len(outcomes):
        raise GammaPayloadError(f"clobTokenIds has {len(token_ids)} ids for {len(outcomes)} outcomes")
    closed = _bool(raw.get("closed"), "closed")
    active = _bool(raw.get("active"), "active")
    accepting = _bool(raw.get("acceptingOrders"), "acceptingOrders")
    neg_risk = _bool(raw.get("negRisk"), "negRisk")
    return {
        "condition_id": condition_id,
        "gamma_market_id": _id(raw.get("id"), "id"),
        "event_id": event_id,
        "question_id": _text(raw.get("questionID"), "questionID"),
        "slug": _text(raw.get("slug"), "slug"),
        "question": _text(raw.get("question"), "question"),
        "outcomes": outcomes,
        "outcome_prices": _prices(raw.get("outcomePrices"), len(outcomes)),
        "clob_token_ids": token_ids,
        "gamma_volume": _preferred_number(raw, "volumeNum", "volume"),
        "gamma_liquidity": _preferred_number(raw, "liquidityNum", "liquidity"),
        "neg_risk": neg_risk,
        "neg_risk_source": None if neg_risk is None else "gamma",
        "neg_risk_market_id": _text(raw.get("negRiskMarketID"), "negRiskMarketID"),
        "enable_order_book": _bool(raw.get("enableOrderBook"), "enableOrderBook"),
        "active": None if active is None else (active and not closed),
        "closed": closed,
        "accepting_orders": None if accepting is None else (accepting and not closed),
        "tick_size": _number(raw.get("orderPriceMinTickSize"), "orderPriceMinTickSize"),
        "min_order_size": _number(raw.get("orderMinSize"), "orderMinSize"),
        "end_date": parse_gamma_datetime(raw.get("endDate")),
        "first_seen_at": now,
        "updated_at": now,
    }


def market_tokens(market: MarketRecord) -> list[TokenRecord]:
    """The market's tokens, each mapped to its outcome by position (Gamma keeps them aligned)."""
    cid, outcomes = market["condition_id"], market["outcomes"]
    return [
        {"token_id": tid, "condition_id": cid, "outcome": outcomes[i], "outcome_index": i}
        for i, tid in enumerate(market["clob_token_ids"])
    ]


def normalize_tag(raw: Mapping[str, Any], now: datetime) -> TagRecord:
    """One ``/tags`` row (or an event's nested tag); the id is kept as a string."""
    if not isinstance(raw, Mapping):
        raise GammaPayloadError("tag is not an object")
    return {
        "tag_id": _id(raw.get("id"), "id"),
        "label": _text(raw.get("label"), "label"),
        "slug": _text(raw.get("slug"), "slug"),
        "updated_at": now,
    }


def sport_tag_ids(sports: Iterable[Any]) -> tuple[set[str], list[Rejected]]:
    """Every tag id the ``/sports`` mapping names (``"1,745, 100639,"`` → ``{"1", "745", "100639"}``)."""
    ids: set[str] = set()
    rejected: list[Rejected] = []
    for sport in sports:
        tags = sport.get("tags") if isinstance(sport, Mapping) else None
        if not isinstance(tags, str):
            rejected.append(Rejected("gamma:sport", "sport without a tags string", sport))
            continue
        ids.update(part.strip() for part in tags.split(",") if part.strip())
    return ids, rejected


# ---- pages ----------------------------------------------------------------------------------------


def normalize_events_page(events: Sequence[Any], now: datetime) -> NormalizedPage:
    """A page of events with nested markets and tags → rows; never raises on one bad item.

    An event served twice on one page is kept once (the second copy is rejected); each
    tag is listed once in ``tags`` however many events carry it.
    """
    page = NormalizedPage()
    seen_events: set[str] = set()
    known_tags: dict[str, TagRecord] = {}
    for raw in events:
        try:
            event = normalize_event(raw, now)
            raw_markets = raw.get("markets") or []
            if not isinstance(raw_markets, list):
                raise GammaPayloadError("markets is not a list")
            if event["event_id"] in seen_events:
                raise GammaPayloadError(f"event {event['event_id']} served twice on one page")
            tag_ids = _event_tags(raw.get("tags"), now, page, known_tags)
        except GammaPayloadError as exc:
            page.rejected.append(Rejected(SOURCE_EVENT, f"event: {exc}", raw))
            continue
        event_id = event["event_id"]
        seen_events.add(event_id)
        page.events.append(event)
        page.event_tags.extend({"event_id": event_id, "tag_id": t} for t in tag_ids)
        for raw_market in raw_markets:
            _add_market(page, raw_market, event_id, tag_ids, now)
    return page


def _event_tags(raw_tags: Any, now: datetime, page: NormalizedPage, known: dict[str, TagRecord]) -> list[str]:
    """The ids of an event's tags; tags new to the page go to ``page.tags`` (bad ones rejected)."""
    if raw_tags is None:
        return []
    if not isinstance(raw_tags, list):
        raise GammaPayloadError("tags is not a list")
    ids: dict[str, None] = {}
    for raw_tag in raw_tags:
        raw_id = raw_tag.get("id") if isinstance(raw_tag, Mapping) else None
        if type(raw_id) is str and raw_id in known:
            ids[raw_id] = None
            continue
        try:
            tag = normalize_tag(raw_tag, now)
        except GammaPayloadError as exc:
            page.rejected.append(Rejected(SOURCE_TAG, f"tag: {exc}", raw_tag))
            continue
        if tag["tag_id"] not in known:
            known[tag["tag_id"]] = tag
            page.tags.append(tag)
        ids[tag["tag_id"]] = None
    return list(ids)


def _add_market(page: NormalizedPage, raw: Any, event_id: str, tag_ids: list[str], now: datetime) -> None:
    """Normalize one nested market into the page (or reject or skip it)."""
    if (
        isinstance(raw, Mapping)
        and not raw.get("conditionId")
        and (raw.get("pendingDeployment") or raw.get("deploying"))
    ):
        page.skipped += 1  # not on chain yet: it comes back with a conditionId later
        return
    try:
        market = normalize_market(raw, event_id, now)
    except GammaPayloadError as exc:
        page.rejected.append(Rejected(SOURCE_MARKET, f"market of event {event_id}: {exc}", raw))
        return
    page.markets.append(market)
    page.tokens.extend(market_tokens(market))
    cid = market["condition_id"]
    page.market_tags.extend({"condition_id": cid, "tag_id": t} for t in tag_ids)
