"""The simulator's book hash reproduces the real captures, and its own feed verifies."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from polytape.sim import World
from polytape.sim.hashing import book_hash, hash_of_payload
from polytape.sim.model import BookEvent, FeedEvent, PriceChangeEvent, TickSizeEvent
from polytape.sim.payloads import clob_book, ws_book
from tests.support.fixtures import fixture_json

load = fixture_json


class ReplayBook:
    """A client-style book: snapshot, then absolute level updates, hashed per §3.6."""

    def __init__(self, snapshot: dict[str, Any], min_order_size: str, neg_risk: bool) -> None:
        self.market = snapshot["market"]
        self.asset_id = snapshot["asset_id"]
        self.bids = {Decimal(lvl["price"]): lvl for lvl in snapshot["bids"]}
        self.asks = {Decimal(lvl["price"]): lvl for lvl in snapshot["asks"]}
        self.tick_size = snapshot["tick_size"]
        self.last_trade_price = snapshot["last_trade_price"]
        self.min_order_size = min_order_size
        self.neg_risk = neg_risk

    def apply(self, change: dict[str, Any]) -> None:
        side = self.bids if change["side"] == "BUY" else self.asks
        price = Decimal(change["price"])
        if Decimal(change["size"]) == 0:
            side.pop(price, None)
        else:
            side[price] = {"price": change["price"], "size": change["size"]}

    def hash(self, timestamp: str) -> str:
        return book_hash(
            self.market,
            self.asset_id,
            timestamp,
            [self.bids[p] for p in sorted(self.bids)],
            [self.asks[p] for p in sorted(self.asks, reverse=True)],
            self.min_order_size,
            self.tick_size,
            self.neg_risk,
            self.last_trade_price,
        )


def test_rest_book_fixture_hash() -> None:
    book = load("clob_book.json")
    assert hash_of_payload(book) == book["hash"]


def test_ws_book_fixture_hash_with_rest_fields() -> None:
    book = load("ws_book.json")
    assert hash_of_payload(book, min_order_size="5", neg_risk=False) == book["hash"]


def test_fixture_sequence_per_change_hashes() -> None:
    book_msg, *changes = load("ws_sequence_book_then_price_changes.json")
    assert hash_of_payload(book_msg, min_order_size="5", neg_risk=False) == book_msg["hash"]
    replay = ReplayBook(book_msg, "5", False)
    checked = 0
    for msg in changes:
        for change in msg["price_changes"]:
            if change["asset_id"] != replay.asset_id:
                continue
            replay.apply(change)
            assert replay.hash(msg["timestamp"]) == change["hash"]
            checked += 1
    assert checked == 4


def test_sim_books_hash_like_the_real_algorithm() -> None:
    world = World(3, now=1_790_000_000.0, trades_per_day=50)
    for market in world.markets.values():
        if market.book is None:
            continue
        for index in (0, 1):
            rest = clob_book(market, index)
            assert hash_of_payload(rest) == rest["hash"]
            msg = ws_book(market, index)
            assert hash_of_payload(msg, min_order_size="5", neg_risk=market.neg_risk_clob) == msg["hash"]


def test_sim_feed_replays_with_matching_hashes() -> None:
    """Replaying the emitted book/price_change stream reproduces every per-change hash."""
    world = World(5, now=1_790_000_000.0, trades_per_day=50)
    books: dict[str, ReplayBook] = {}
    for market in world.markets.values():
        if market.book is not None:
            for index, tid in enumerate(market.token_ids):
                books[tid] = ReplayBook(ws_book(market, index), "5", market.neg_risk_clob)
    events: list[FeedEvent] = []
    checked = 0

    def listener(event: FeedEvent) -> None:
        nonlocal checked
        events.append(event)
        if isinstance(event, PriceChangeEvent):
            for change in event.changes:
                replay = books[change.asset_id]
                replay.apply({"side": change.side, "price": change.price, "size": change.size})
                assert replay.hash(str(event.timestamp_ms)) == change.hash
                bids = sorted(replay.bids)
                assert change.best_bid == (replay.bids[bids[-1]]["price"] if bids else "0")
                checked += 1
        elif isinstance(event, TickSizeEvent):
            for tid in world.markets[event.condition_id].token_ids:
                books[tid].tick_size = event.new_tick_size
        elif isinstance(event, BookEvent):  # after a trade: a full replacement
            market = world.markets[event.condition_id]
            for index, tid in enumerate(market.token_ids):
                books[tid] = ReplayBook(ws_book(market, index), "5", market.neg_risk_clob)

    world.add_listener(listener)
    world.step(now=1_790_000_100.0, n=60)
    assert checked > 50
    both = [e for e in events if isinstance(e, PriceChangeEvent)]
    assert all({c.asset_id for c in e.changes} == set(world.markets[e.condition_id].token_ids) for e in both)
