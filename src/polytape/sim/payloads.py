"""World objects → wire dicts shaped exactly like the real payloads (see fixtures/).

Key order follows the captures. Quirks are deliberate: JSON-in-string fields,
market ``volume``/``liquidity`` as numeric strings but event numbers as numbers,
ms-epoch string timestamps on the CLOB, epoch-second ints on the Data API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from polytape.sim.generate import closed_time, iso
from polytape.sim.hashing import book_hash
from polytape.sim.model import (
    Event,
    Fill,
    LevelChange,
    Market,
    PriceChangeEvent,
    Sport,
    Tag,
    TickSizeEvent,
    TradeEvent,
    fmt_decimal,
)

if TYPE_CHECKING:
    from polytape.sim.world import World

Json = dict[str, Any]

HOSTS = {
    "gamma": "gamma-api.polymarket.com",
    "data": "data-api.polymarket.com",
    "clob": "clob.polymarket.com",
    "ws": "ws-subscriptions-clob.polymarket.com",
}


def number(value: float) -> int | float:
    """A JSON number the way the real APIs print it (``15``, not ``15.0``)."""
    return int(value) if float(value).is_integer() else value


def _yes_price(market: Market) -> Decimal:
    return Decimal(str(round(min(max(market.price, 0.0005), 0.9995), 4)))


# ---- Gamma -------------------------------------------------------------------------


def gamma_tag(tag: Tag) -> Json:
    """One ``/tags`` row (also nested under events)."""
    out: Json = {"id": tag.id, "label": tag.label, "slug": tag.slug}
    if tag.force_show is not None:
        out["forceShow"] = tag.force_show
    out.update(createdAt=tag.created_at, updatedAt=tag.updated_at, requiresTranslation=False)
    return out


def gamma_sport(sport: Sport) -> Json:
    """One ``/sports`` row; ``tags`` is the raw comma string (spaces, trailing commas)."""
    return {
        "id": sport.id,
        "sport": sport.sport,
        "image": f"https://polymarket-upload.s3.us-east-2.amazonaws.com/{sport.sport}.png",
        "resolution": f"https://www.{sport.sport}.com/",
        "ordering": "home",
        "tags": sport.tags,
        "series": sport.series,
        "createdAt": sport.created_at,
    }


def gamma_market(market: Market, event: Event, *, standalone: bool = False) -> Json:
    """A Gamma market; ``standalone`` adds the ``events`` back-reference of ``/markets``."""
    closed = market.closed
    if closed:
        win = market.winner_index or 0
        prices = ["1", "0"] if win == 0 else ["0", "1"]
    else:
        yes = _yes_price(market)
        prices = [fmt_decimal(yes), fmt_decimal(Decimal(1) - yes)]
    token_ids: Any = list(market.token_ids) if market.token_ids_as_array else json.dumps(market.token_ids)
    out: Json = {
        "id": market.gamma_id,
        "question": market.question,
        "conditionId": market.condition_id,
        "slug": market.slug,
        "resolutionSource": "",
        "endDate": market.end_date,
    }
    if not closed:
        out["liquidity"] = str(market.liquidity)
    out.update(
        startDate=market.start_date,
        image=market.image,
        icon=market.image,
        description=f"This market will resolve to \u201cYes\u201d if {market.question[5:-1]}.",
        outcomes=json.dumps(market.outcomes),
        outcomePrices=json.dumps(prices),
        volume=str(round(market.volume, 6)),
        active=True,
        closed=closed,
        marketMakerAddress="",
        createdAt=market.created_at,
        updatedAt=market.updated_at,
    )
    if closed and market.closed_ts is not None:
        out["closedTime"] = closed_time(market.closed_ts)
    out.update(
        new=False,
        featured=False,
        submitted_by="0x91430CaD2d3975766499717fA0D66A78D814E5c5",
        archived=False,
        resolvedBy="0x2F5e3684cb1F318ec51b00Edba38d79Ac2c0aA9d",
        restricted=True,
        groupItemTitle=market.group_item_title,
        groupItemThreshold=str(len(market.group_item_title) % 9),
        questionID=market.question_id,
        enableOrderBook=market.enable_order_book,
        orderPriceMinTickSize=float(market.tick_size),
        orderMinSize=5,
    )
    if closed:
        out["umaResolutionStatus"] = "resolved"
    out.update(volumeNum=round(market.volume, 6))
    if not closed:
        out["liquidityNum"] = market.liquidity
    out.update(
        endDateIso=market.end_date[:10],
        startDateIso=market.start_date[:10],
        hasReviewedDates=True,
        volume24hr=round(market.volume_24hr, 6),
        volume1wk=round(market.volume_24hr * 5.1, 6),
        volume1mo=round(market.volume_24hr * 19.3, 6),
        volume1yr=round(market.volume, 6),
        clobTokenIds=token_ids,
        umaBond="25000" if market.neg_risk_clob else "500",
        umaReward="10",
        volumeClob=round(market.volume, 6),
        customLiveness=0,
        acceptingOrders=not closed,
    )
    if market.neg_risk_gamma is not None:
        out["negRisk"] = market.neg_risk_gamma
    if market.neg_risk_gamma:
        out["negRiskMarketID"] = market.neg_risk_market_id
    out["negRiskRequestID"] = market.neg_risk_request_id
    if standalone:
        out["events"] = [gamma_event_head(event)]
    out.update(
        ready=False,
        funded=False,
        acceptingOrdersTimestamp=market.accepting_orders_ts,
        cyom=False,
        competitive=0.91,
        pagerDutyNotificationEnabled=False,
        approved=True,
        rewardsMinSize=20,
        rewardsMaxSpread=3.5,
        spread=float(market.tick_size),
    )
    if not closed and not market.sparse_prices:
        out.update(oneDayPriceChange=0.002, oneWeekPriceChange=-0.0025)
    if market.last_trade_price[0]:
        out["lastTradePrice"] = float(market.last_trade_price[0])
    if market.book is not None:
        bid, ask = market.book.best(0)
        if bid is not None and not market.sparse_prices:
            out["bestBid"] = float(bid)
        if ask is not None:
            out["bestAsk"] = float(ask)
    out.update(
        automaticallyActive=True,
        clearBookOnStart=True,
        seriesColor="",
        showGmpSeries=False,
        showGmpOutcome=False,
        manualActivation=False,
        negRiskOther=False,
        umaResolutionStatuses='["proposed"]' if closed else "[]",
        pendingDeployment=False,
        deploying=False,
        deployingTimestamp=market.deploying_ts,
        rfqEnabled=False,
        holdingRewardsEnabled=False,
        feesEnabled=False,
        requiresTranslation=False,
        feeType=None,
    )
    return out


def gamma_event_head(event: Event) -> Json:
    """Event fields without ``markets``/``tags`` (the market's back-reference)."""
    out: Json = {
        "id": event.id,
        "ticker": event.slug,
        "slug": event.slug,
        "title": event.title,
        "description": event.description,
        "resolutionSource": "",
        "startDate": event.start_date,
        "creationDate": event.creation_date,
        "endDate": event.end_date,
        "image": event.image,
        "icon": event.image,
        "active": True,
        "closed": event.closed,
        "archived": False,
        "new": False,
        "featured": False,
        "restricted": True,
    }
    return out


def gamma_event(event: Event, markets: list[Market], tags: dict[str, Tag]) -> Json:
    """A Gamma event with nested markets (no back-refs) and tags; event numbers are numbers."""
    out = gamma_event_head(event)
    if event.closed and event.closed_ts is not None:
        out["closedTime"] = iso(event.closed_ts, 6)
    volume = sum(m.volume for m in markets)
    liquidity = sum(m.liquidity for m in markets if not m.closed)
    vol24 = sum(m.volume_24hr for m in markets)
    out.update(
        liquidity=round(liquidity, 5),
        volume=round(volume, 6),
        openInterest=0,
    )
    if event.neg_risk:
        out["sortBy"] = "price"
    out.update(
        createdAt=event.created_at,
        updatedAt=event.updated_at,
        competitive=0.94,
        volume24hr=round(vol24, 6),
        volume1wk=round(vol24 * 5.1, 6),
        volume1mo=round(vol24 * 19.3, 6),
        volume1yr=round(volume, 6),
        enableOrderBook=True,
        liquidityClob=round(liquidity, 5),
        negRisk=event.neg_risk,
    )
    if event.neg_risk:
        out["negRiskMarketID"] = event.neg_risk_market_id
    out.update(
        commentCount=event.comment_count,
        markets=[gamma_market(m, event) for m in markets],
        tags=[gamma_tag(tags[t]) for t in event.tag_ids if t in tags],
        cyom=False,
        showAllOutcomes=True,
        showMarketImages=True,
        enableNegRisk=event.neg_risk,
        automaticallyActive=True,
        startTime=event.end_date,
        gmpChartMode="default",
        negRiskAugmented=event.neg_risk,
        estimateValue=False,
        cumulativeMarkets=False,
        pendingDeployment=False,
        deploying=False,
        deployingTimestamp=event.created_at,
        requiresTranslation=False,
    )
    return out


# ---- Data API -----------------------------------------------------------------------


def data_trade(fill: Fill, market: Market, event: Event) -> Json:
    """A ``/trades`` row (camelCase, numbers as numbers, epoch seconds)."""
    return {
        "proxyWallet": fill.proxy_wallet,
        "side": fill.side,
        "asset": fill.asset,
        "conditionId": fill.condition_id,
        "size": number(fill.size),
        "price": number(fill.price),
        "timestamp": fill.timestamp,
        "title": market.question,
        "slug": market.slug,
        "icon": market.image,
        "eventSlug": event.slug,
        "outcome": fill.outcome,
        "outcomeIndex": fill.outcome_index,
        "name": fill.name,
        "pseudonym": fill.pseudonym,
        "bio": "",
        "profileImage": "",
        "profileImageOptimized": "",
        "transactionHash": fill.transaction_hash,
    }


def data_v2_trade(fill: Fill, market: Market, event: Event) -> Json:
    """A ``/v2/trades`` row (snake_case)."""
    return {
        "proxy_wallet": fill.proxy_wallet,
        "side": fill.side,
        "token_id": fill.asset,
        "condition_id": fill.condition_id,
        "size": number(fill.size),
        "price": number(fill.price),
        "timestamp": fill.timestamp,
        "title": market.question,
        "slug": market.slug,
        "icon": market.image,
        "event_slug": event.slug,
        "outcome": fill.outcome,
        "outcome_index": fill.outcome_index,
        "name": fill.name,
        "pseudonym": fill.pseudonym,
        "bio": "",
        "profile_image": "",
        "profile_image_optimized": "",
        "transaction_hash": fill.transaction_hash,
    }


# ---- CLOB ------------------------------------------------------------------------------


def rfc3339_ms(ts_ms: int) -> str:
    """``2026-08-03T05:27:48.581Z`` (the seed's REST format, kept for tolerance)."""
    dt = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def clob_book(market: Market, index: int, *, rest: bool = True) -> Json:
    """The REST ``/book`` payload of one token, hash computed per reference §3.6.

    ``rest=True`` applies the RFC3339-timestamp quirk for markets that have it.
    """
    book = market.book
    assert book is not None
    bids, asks = book.levels(index)
    ts = rfc3339_ms(book.timestamp_ms) if rest and market.rfc3339_book_ts else str(book.timestamp_ms)
    ltp = market.last_trade_price[index]
    digest = book_hash(
        market.condition_id,
        market.token_ids[index],
        ts,
        bids,
        asks,
        book.min_order_size,
        book.tick_size,
        market.neg_risk_clob,
        ltp,
    )
    return {
        "market": market.condition_id,
        "asset_id": market.token_ids[index],
        "timestamp": ts,
        "hash": digest,
        "bids": bids,
        "asks": asks,
        "min_order_size": book.min_order_size,
        "tick_size": book.tick_size,
        "neg_risk": market.neg_risk_clob,
        "last_trade_price": ltp,
    }


def ws_book(market: Market, index: int) -> Json:
    """A WS ``book`` message (no ``min_order_size``/``neg_risk``, like the captures)."""
    rest = clob_book(market, index, rest=False)
    return {
        "market": rest["market"],
        "asset_id": rest["asset_id"],
        "timestamp": rest["timestamp"],
        "hash": rest["hash"],
        "bids": rest["bids"],
        "asks": rest["asks"],
        "tick_size": rest["tick_size"],
        "event_type": "book",
        "last_trade_price": rest["last_trade_price"],
    }


def _change(ch: LevelChange) -> Json:
    return {
        "asset_id": ch.asset_id,
        "price": ch.price,
        "size": ch.size,
        "side": ch.side,
        "hash": ch.hash,
        "best_bid": ch.best_bid,
        "best_ask": ch.best_ask,
    }


def ws_price_change(ev: PriceChangeEvent) -> Json:
    """Current (v2, since 2025-09-15) ``price_change``: both tokens, per-change hash."""
    return {
        "market": ev.condition_id,
        "price_changes": [_change(ch) for ch in ev.changes],
        "timestamp": str(ev.timestamp_ms),
        "event_type": "price_change",
    }


def ws_price_change_v1(ev: PriceChangeEvent) -> list[Json]:
    """The legacy (v1) shape: one message per asset, ``changes[]`` and one final hash."""
    out: list[Json] = []
    for asset in dict.fromkeys(ch.asset_id for ch in ev.changes):
        mine = [ch for ch in ev.changes if ch.asset_id == asset]
        out.append(
            {
                "asset_id": asset,
                "changes": [{"price": c.price, "side": c.side, "size": c.size} for c in mine],
                "event_type": "price_change",
                "market": ev.condition_id,
                "timestamp": str(ev.timestamp_ms),
                "hash": mine[-1].hash,
            }
        )
    return out


def ws_last_trade_price(ev: TradeEvent) -> Json:
    """``last_trade_price`` for a taker fill (strings, taker side, tx hash)."""
    fill = ev.fill
    return {
        "asset_id": fill.asset,
        "event_type": "last_trade_price",
        "fee_rate_bps": ev.fee_rate_bps,
        "market": fill.condition_id,
        "price": fmt_decimal(Decimal(str(fill.price))),
        "side": fill.side,
        "size": fmt_decimal(Decimal(str(fill.size))),
        "timestamp": str(ev.timestamp_ms),
        "transaction_hash": fill.transaction_hash,
    }


def ws_tick_size_change(ev: TickSizeEvent, market: Market) -> list[Json]:
    """One ``tick_size_change`` per token of the market."""
    return [
        {
            "asset_id": tid,
            "event_type": "tick_size_change",
            "market": ev.condition_id,
            "new_tick_size": ev.new_tick_size,
            "old_tick_size": ev.old_tick_size,
            "timestamp": str(ev.timestamp_ms),
        }
        for tid in market.token_ids
    ]


def ws_best_bid_ask(market: Market, index: int, ts_ms: int) -> Json:
    """``best_bid_ask`` (custom feature)."""
    assert market.book is not None
    bid, ask = market.book.best(index)
    b = bid if bid is not None else Decimal(0)
    a = ask if ask is not None else Decimal(1)
    return {
        "event_type": "best_bid_ask",
        "market": market.condition_id,
        "asset_id": market.token_ids[index],
        "best_bid": fmt_decimal(b),
        "best_ask": fmt_decimal(a),
        "spread": fmt_decimal(a - b),
        "timestamp": str(ts_ms),
    }


def ws_market_resolved(market: Market, ts_ms: int, tag_slugs: list[str]) -> Json:
    """``market_resolved`` (custom feature)."""
    win = market.winner_index or 0
    return {
        "event_type": "market_resolved",
        "id": market.gamma_id,
        "market": market.condition_id,
        "assets_ids": list(market.token_ids),
        "winning_asset_id": market.token_ids[win],
        "winning_outcome": market.outcomes[win],
        "timestamp": str(ts_ms),
        "tags": tag_slugs,
    }


# ---- truth ------------------------------------------------------------------------------


def truth(world: World) -> Json:
    """Everything the simulator serves, for tests to compare with what polytape stored."""
    tags = {t.id: t for t in world.tags}
    events = [
        gamma_event(e, [world.markets[c] for c in e.market_ids], tags)
        for e in sorted(world.events.values(), key=lambda e: int(e.id))
    ]
    markets = [
        {
            "condition_id": m.condition_id,
            "gamma_market_id": m.gamma_id,
            "event_id": m.event_id,
            "token_ids": list(m.token_ids),
            "outcomes": list(m.outcomes),
            "neg_risk_gamma": m.neg_risk_gamma,
            "neg_risk_clob": m.neg_risk_clob,
            "enable_order_book": m.enable_order_book,
            "closed": m.closed,
            "tick_size": m.tick_size,
            "has_book": m.book is not None,
            "quirks": list(m.quirks),
            "volume": m.volume,
            "liquidity": m.liquidity,
        }
        for m in world.markets.values()
    ]
    tokens = [
        {"token_id": tid, "condition_id": cid, "outcome": world.markets[cid].outcomes[i], "outcome_index": i}
        for tid, (cid, i) in world.tokens.items()
    ]
    trades = [
        {
            "seq": f.seq,
            "transactionHash": f.transaction_hash,
            "proxyWallet": f.proxy_wallet,
            "asset": f.asset,
            "conditionId": f.condition_id,
            "side": f.side,
            "size": number(f.size),
            "price": number(f.price),
            "timestamp": f.timestamp,
            "outcomeIndex": f.outcome_index,
            "taker": f.taker,
        }
        for f in world.trades
    ]
    oi = {cid: v for cid, v in world.open_interest.items() if world.markets[cid].oi_servable}
    return {
        "seed": world.seed,
        "now": world.now,
        "step_count": world.step_count,
        "events": events,
        "markets": markets,
        "tokens": tokens,
        "trades": trades,
        "open_interest": oi,
        "books": world.books,
    }
