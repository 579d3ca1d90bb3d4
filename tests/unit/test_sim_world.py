"""The world is deterministic from its seed, evolves plausibly and can be planted."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from polytape.sim import FaultProfile, World
from polytape.sim.faults import FaultInjector
from polytape.sim.model import (
    BookEvent,
    FeedEvent,
    PriceChangeEvent,
    ResolvedEvent,
    TickSizeEvent,
    TradeEvent,
)

NOW = 1_790_000_000.0


def small(seed: int = 7) -> World:
    return World(seed, now=NOW, trades_per_day=400)


def test_same_seed_same_world() -> None:
    a, b = small(), small()
    a.step(now=NOW + 10, n=20)
    b.step(now=NOW + 10, n=20)
    assert json.dumps(a.truth()) == json.dumps(b.truth())
    assert json.dumps(small(8).truth()) != json.dumps(small(7).truth())


def test_history_shape() -> None:
    world = small()
    takers = [f for f in world.trades if f.taker]
    assert len(takers) >= 1000
    live = [f for f in world.trades if not world.markets[f.condition_id].closed]
    assert all(NOW - 3 * 86_400 <= f.timestamp <= NOW for f in live)
    per_tx = Counter(f.transaction_hash for f in takers)
    assert max(per_tx.values()) >= 2  # multi-fill transactions
    assert any(f.usd >= 10_000 for f in takers)
    assert len([f for f in world.trades if not f.taker]) == len(takers)  # maker rows
    assert [f.sort_key() for f in world.trades] == sorted(f.sort_key() for f in world.trades)
    closed = [m for m in world.markets.values() if m.closed]
    assert closed and all(m.book is None for m in closed)
    assert any(len(e.market_ids) > 1 and e.neg_risk for e in world.events.values())


def test_every_quirk_is_present() -> None:
    quirks = Counter(q for m in small().markets.values() for q in m.quirks)
    expected = {
        "token_ids_array", "gamma_negrisk_mismatch", "legacy_no_negrisk", "no_order_book",
        "rfc3339_book_ts", "oi_unservable", "sparse_prices",
    }  # fmt: skip
    assert expected <= set(quirks)


def test_step_moves_tape_books_and_oi() -> None:
    world = small()
    events: list[FeedEvent] = []
    world.add_listener(events.append)
    oi_before = dict(world.open_interest)
    added = world.step(now=NOW + 5, n=40)
    assert added > 0 and world.trades[-1].timestamp == int(NOW + 5)
    assert world.open_interest != oi_before
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["PriceChangeEvent"] and kinds["TradeEvent"] and kinds["BookEvent"]
    for event in events:  # a trade is followed by its market's book snapshot
        if isinstance(event, TradeEvent):
            later = events[events.index(event) :]
            assert any(isinstance(e, BookEvent) and e.condition_id == event.fill.condition_id for e in later)


def test_query_trades_filters_newest_first() -> None:
    world = small()
    cid = world.trades[-1].condition_id
    rows = list(world.query_trades(markets={cid}, min_cash=50))
    assert rows and all(r.condition_id == cid and r.usd >= 50 and r.taker for r in rows)
    assert [r.sort_key() for r in rows] == sorted((r.sort_key() for r in rows), reverse=True)
    assert len(list(world.query_trades(taker_only=False, markets={cid}))) == 2 * len(
        list(world.query_trades(markets={cid}))
    )
    window = list(world.query_trades(start=int(NOW - 3600), end=int(NOW - 1800)))
    assert all(NOW - 3600 <= r.timestamp <= NOW - 1800 for r in window)


def _open(world: World) -> Any:
    return next(
        m for m in world.markets.values() if m.book is not None and "gamma_negrisk_mismatch" not in m.quirks
    )


def test_plant_trade_and_oi_and_close() -> None:
    world = small()
    market = _open(world)
    events: list[FeedEvent] = []
    world.add_listener(events.append)
    fill = world.plant_trade(
        market.condition_id, 1, "BUY", 20_000, 0.6, wallet="0x" + "ab" * 20, tx_hash="0x" + "cd" * 32
    )
    twin = world.plant_trade(
        market.condition_id, 1, "BUY", 5, 0.61, wallet=fill.proxy_wallet, tx_hash=fill.transaction_hash
    )
    assert world.trades[-2:] == [fill, twin] and fill.asset == market.token_ids[1]
    assert isinstance(events[0], TradeEvent) and market.last_trade_price[1] == "0.61"
    old = world.plant_trade(market.condition_id, 0, "SELL", 1, 0.5, ts=int(NOW - 100), emit=False)
    assert world.trades.index(old) < len(world.trades) - 2
    world.set_open_interest(market.condition_id, 1234.5)
    assert world.open_interest[market.condition_id] == 1234.5
    world.close_market(market.condition_id, winner_index=1)
    assert market.closed and market.book is None and isinstance(events[-1], ResolvedEvent)


def test_set_book_emits_mirrored_deltas_and_tick_change() -> None:
    world = small()
    market = next(m for m in world.markets.values() if m.book is not None and m.tick_size == "0.01")
    events: list[FeedEvent] = []
    world.add_listener(events.append)
    world.set_book(market.token_ids[1], bids=[("0.02", "10")], asks=[("0.03", "7"), ("0.05", "9")])
    assert market.book is not None
    yes_bids, yes_asks = market.book.levels(0)
    assert yes_bids == [{"price": "0.95", "size": "9"}, {"price": "0.97", "size": "7"}]
    assert yes_asks == [{"price": "0.98", "size": "10"}]
    change = next(e for e in events if isinstance(e, PriceChangeEvent))
    assert len(change.changes) % 2 == 0
    tick = next(e for e in events if isinstance(e, TickSizeEvent))
    assert (tick.old_tick_size, tick.new_tick_size) == ("0.01", "0.001") and market.tick_size == "0.001"
    bid, ask = market.book.best(1)
    assert (bid, ask) == (Decimal("0.02"), Decimal("0.03"))


def test_fault_profile_is_seeded() -> None:
    def run() -> list[str | None]:
        injector = FaultInjector(FaultProfile(seed=3, error_rate=0.2, rate_429=0.2))
        return [(f.kind if (f := injector.take_http("data", "/trades")) else None) for _ in range(50)]

    first = run()
    assert first == run() and "429" in first and any(k in ("500", "502", "503") for k in first)
    injector = FaultInjector()
    injector.inject("429", host="data", path="/trades", count=2)
    assert injector.take_http("gamma", "/events") is None
    assert [injector.take_http("data", "/trades") is not None for _ in range(3)] == [True, True, False]
    with pytest.raises(ValueError, match="unknown fault kind"):
        injector.inject("boom")
    assert FaultProfile.named("hostile").ws_freeze_rate > 0


def test_gamma_market_ids_are_unique_in_a_large_world() -> None:
    from polytape.sim import World

    world = World(5, n_events=2500, n_closed_events=0, history_days=0.01, trades_per_day=10)
    ids = [m.gamma_id for m in world.markets.values()]
    assert len(ids) == len(set(ids)) > 4000


def test_open_neg_risk_groups_start_without_arbitrage() -> None:
    from decimal import Decimal

    from polytape.sim import World

    world = World(7)
    checked = 0
    for event in world.events.values():
        if not event.neg_risk or event.closed:
            continue
        books = [world.markets[cid].book for cid in event.market_ids]
        if any(b is None or not b.asks or not b.bids for b in books):
            continue
        asks = sum((min(b.asks) for b in books if b), Decimal(0))
        bids = sum((max(b.bids) for b in books if b), Decimal(0))
        assert bids <= 1 <= asks, (event.id, bids, asks)
        checked += 1
    assert checked >= 3


def test_every_fill_is_priced_inside_the_unit_interval() -> None:
    from polytape.sim import World

    world = World(14, n_events=12, n_closed_events=2, history_days=2.0, trades_per_day=800)
    for i in range(300):
        world.step(now=world.now + 0.3 * (i + 1))
    prices = [f.price for f in world.trades]
    assert prices and all(0 < p < 1 for p in prices)


def test_book_history_answers_the_book_at_any_time() -> None:
    from polytape.sim import World

    world = World(5, keep_book_history=True, now=1_800_000_000.0)
    token = next(t for t, (cid, _) in world.tokens.items() if world.markets[cid].book is not None)
    seen: list[tuple[int, object]] = []
    for i in range(200):
        world.step(1_800_000_000.0 + i * 0.25)
        seen.append((int((1_800_000_000.0 + i * 0.25) * 1000), world.book_at(token, 1 << 60)))
    book = world.books[token]
    now = (
        sorted(((float(lv["price"]), float(lv["size"])) for lv in book["bids"]), reverse=True),
        sorted((float(lv["price"]), float(lv["size"])) for lv in book["asks"]),
    )
    assert world.book_at(token, 1 << 60) == now
    for ts, state in seen:  # the state right after each step is the state at that step's time
        assert world.book_at(token, ts) == state
    assert World(5).book_history is None
