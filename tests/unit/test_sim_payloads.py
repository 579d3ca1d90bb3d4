"""Simulator payloads carry the same keys and JSON types as the real captures."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from polytape.sim import World
from polytape.sim import payloads as pl
from polytape.sim.model import Fill, PriceChangeEvent, TickSizeEvent, TradeEvent
from tests.support.fixtures import fixture_json

NOW = 1_790_000_000.0

# keys a capture has that the simulator leaves out on purpose (optional on the real API too)
EVENT_OPTIONAL = {"countryName", "electionType"}
MARKET_OPTIONAL = {
    "clobRewards", "oneMonthPriceChange", "volume24hrClob", "volume1wkClob", "volume1moClob",
    "volume1yrClob", "liquidityClob", "makerBaseFee", "takerBaseFee", "eventStartTime",
    "makerRebatesFeeShareBps", "umaEndDate", "automaticallyResolved", "negRiskMarketID", "bestBid",
    "oneDayPriceChange", "oneWeekPriceChange", "lastTradePrice", "bestAsk",
}  # fmt: skip


load = fixture_json


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_like(
    sim: dict[str, Any], real: dict[str, Any], optional: set[str] | frozenset[str] = frozenset()
) -> None:
    missing = set(real) - set(sim) - set(optional)
    assert not missing, f"missing keys: {sorted(missing)}"
    for key in set(real) & set(sim):
        if real[key] is None or sim[key] is None or key == "clobTokenIds":  # str or list, both real
            continue
        assert kind(sim[key]) == kind(real[key]), f"{key}: {sim[key]!r} vs {real[key]!r}"


@pytest.fixture(scope="module")
def world() -> World:
    return World(7, now=NOW, trades_per_day=200)


def _open_market(world: World, *, quirk: str | None = None) -> Any:
    return next(
        m
        for m in world.markets.values()
        if not m.closed and m.book is not None and (quirk is None or quirk in m.quirks)
    )


def test_gamma_event_and_nested_markets_like_capture(world: World) -> None:
    real = load("gamma_events_page.json")[0]
    tags = {t.id: t for t in world.tags}
    for event in world.events.values():
        sim = pl.gamma_event(event, [world.markets[c] for c in event.market_ids], tags)
        optional = EVENT_OPTIONAL | ({"sortBy", "negRiskMarketID"} if not event.neg_risk else set())
        assert_like(sim, real, optional)
        for tag in sim["tags"]:
            assert_like(tag, real["tags"][0], {"forceShow"})
        for market in sim["markets"]:
            assert "events" not in market and "tags" not in market
            if not market["closed"]:
                assert_like(market, real["markets"][0], MARKET_OPTIONAL | {"negRisk"})
            assert isinstance(market["volume"], str) and isinstance(market["volumeNum"], float | int)
            assert json.loads(market["outcomes"]) and len(json.loads(market["outcomePrices"])) == 2
            assert json.loads(market["umaResolutionStatuses"]) in ([], ["proposed"])


def test_standalone_market_like_capture(world: World) -> None:
    market = _open_market(world)
    sim = pl.gamma_market(market, world.event_of(market), standalone=True)
    assert_like(
        sim, load("gamma_market.json"), MARKET_OPTIONAL | {"submitted_by", "resolvedBy", "groupItemTitle"}
    )
    assert sim["events"][0]["id"] == market.event_id


def test_closed_market_like_capture(world: World) -> None:
    market = next(m for m in world.markets.values() if m.closed)
    sim = pl.gamma_market(market, world.event_of(market))
    real = load("gamma_market_closed_resolved.json")
    assert_like(sim, real, MARKET_OPTIONAL)
    assert sim["active"] is True and sim["closed"] is True and sim["acceptingOrders"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00", sim["closedTime"])
    assert sorted(json.loads(sim["outcomePrices"])) == ["0", "1"]


def test_gamma_quirks_present(world: World) -> None:
    markets = [pl.gamma_market(m, world.event_of(m)) for m in world.markets.values()]
    assert any(isinstance(m["clobTokenIds"], list) for m in markets)
    assert any(isinstance(m["clobTokenIds"], str) for m in markets)
    assert any("negRisk" not in m for m in markets)
    assert any(m["enableOrderBook"] is False for m in markets)
    mismatch = _open_market(world, quirk="gamma_negrisk_mismatch")
    assert mismatch.neg_risk_gamma is False and pl.clob_book(mismatch, 0)["neg_risk"] is True
    fractions = set()
    for m in markets:
        for key in ("createdAt", "startDate", "deployingTimestamp"):
            match = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", m[key])
            assert match, m[key]
            fractions.add(len(match.group(1) or "") - 1 if match.group(1) else 0)
            datetime.fromisoformat(m[key])
    assert fractions == {0, 3, 6}


def test_tags_and_sports_like_capture(world: World) -> None:
    assert_like(pl.gamma_tag(world.tags[0]), load("gamma_tags.json")[0])
    sports = [pl.gamma_sport(s) for s in world.sports]
    for row in sports:
        assert_like(row, load("gamma_sports.json")[0])
    assert any(row["tags"].endswith(",") and ", " in row["tags"] for row in sports)


def test_data_trades_like_capture(world: World) -> None:
    fill = world.trades[-1]
    market = world.markets[fill.condition_id]
    v1 = pl.data_trade(fill, market, world.event_of(market))
    real = load("data_trades.json")[0]
    assert list(v1) == list(real)
    assert_like(v1, real)
    v2 = pl.data_v2_trade(fill, market, world.event_of(market))
    real2 = load("data_v2_trades.json")["data"][0]
    assert list(v2) == list(real2)
    assert_like(v2, real2)
    assert isinstance(v1["timestamp"], int)


def test_clob_book_like_capture(world: World) -> None:
    market = _open_market(world)
    for index in (0, 1):
        rest = pl.clob_book(market, index)
        assert list(rest) == list(load("clob_book.json"))
        assert_like(rest, load("clob_book.json"))
        assert rest["timestamp"].isdigit() and len(rest["timestamp"]) == 13
        bids = [Decimal(lvl["price"]) for lvl in rest["bids"]]
        asks = [Decimal(lvl["price"]) for lvl in rest["asks"]]
        assert bids == sorted(bids) and asks == sorted(asks, reverse=True)
        assert bids[-1] < asks[-1]
        ws = pl.ws_book(market, index)
        assert list(ws) == list(load("ws_book.json"))


def test_rfc3339_book_quirk(world: World) -> None:
    market = _open_market(world, quirk="rfc3339_book_ts")
    stamp = pl.clob_book(market, 0)["timestamp"]
    assert stamp.endswith("Z") and datetime.fromisoformat(stamp)
    assert pl.ws_book(market, 0)["timestamp"].isdigit()


def test_ws_messages_like_capture(world: World) -> None:
    market = _open_market(world)
    events: list[Any] = []
    world.add_listener(events.append)
    world.set_book(market.token_ids[0], [("0.3", "100"), ("0.31", "50")], [("0.35", "20")])
    world.remove_listener(events.append)
    change = next(e for e in events if isinstance(e, PriceChangeEvent))
    v2 = pl.ws_price_change(change)
    real = load("ws_price_change_v2.json")
    assert list(v2) == list(real)
    assert list(v2["price_changes"][0]) == list(real["price_changes"][0])
    assert {c["asset_id"] for c in v2["price_changes"]} == set(market.token_ids)
    v1 = pl.ws_price_change_v1(change)
    real1 = load("ws_price_change_v1.json")
    assert (
        len(v1) == 2 and list(v1[0]) == list(real1) and list(v1[0]["changes"][0]) == list(real1["changes"][0])
    )
    fill = Fill(
        1,
        "0x" + "1" * 40,
        "BUY",
        market.token_ids[0],
        market.condition_id,
        10.5,
        0.31,
        1,
        "Yes",
        0,
        "0x" + "a" * 64,
        True,
    )
    ltp = pl.ws_last_trade_price(TradeEvent(fill, 1_790_000_000_123))
    assert set(ltp) == set(load("ws_last_trade_price_doc.json"))
    assert_like(ltp, load("ws_last_trade_price_doc.json"))
    ticks = pl.ws_tick_size_change(TickSizeEvent(market.condition_id, "0.01", "0.001", 1), market)
    assert list(ticks[0]) == list(load("ws_tick_size_change.json"))
    assert list(pl.ws_best_bid_ask(market, 0, 1)) == list(load("ws_best_bid_ask.json"))
    resolved = pl.ws_market_resolved(market, 1, ["crypto"])
    assert list(resolved) == list(load("ws_market_resolved.json"))
