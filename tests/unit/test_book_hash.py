"""The incremental book hash and deferred verification.

The hash kept from level fragments must stay byte-identical to the full construction
(reference.md §3.6: ``json.dumps`` of the ten-key payload, as the simulator and
py-clob-client build it); deferred checks must still catch a lost delta within
``verify_within``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from polytape.bookfeed.keeper import BookKeeper
from polytape.books import BookRegistry, OrderBook
from polytape.normalize.books import BookMsg, Level
from polytape.sim.hashing import book_hash

NOW = datetime(2026, 9, 29, 12, 0, tzinfo=UTC)
MARKET = "0x" + "ab" * 32
TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"


def full_rebuild_hash(book: OrderBook) -> str:
    """The previous construction: a dict payload, both sides sorted, msgspec, SHA-1."""
    payload = {
        "market": book.condition_id,
        "asset_id": book.token_id,
        "timestamp": book.timestamp,
        "hash": "",
        "bids": [{"price": p, "size": z} for p, z in book.side_texts("BUY")],
        "asks": [{"price": p, "size": z} for p, z in book.side_texts("SELL")],
        "min_order_size": book.min_order_size,
        "tick_size": book.tick_size,
        "neg_risk": book.neg_risk,
        "last_trade_price": book.last_trade_price,
    }
    return hashlib.sha1(msgspec.json.encode(payload)).hexdigest()


def official_hash(book: OrderBook) -> str:
    """``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` per §3.6."""
    assert book.min_order_size is not None and book.tick_size is not None and book.neg_risk is not None
    return book_hash(
        book.condition_id,
        book.token_id,
        book.timestamp,
        [{"price": p, "size": s} for p, s in book.side_texts("BUY")],
        [{"price": p, "size": s} for p, s in book.side_texts("SELL")],
        book.min_order_size,
        book.tick_size,
        book.neg_risk,
        book.last_trade_price,
    )


# prices in the spellings a server could use for one value, so float keys collide
price_texts = st.integers(min_value=0, max_value=1000).flatmap(
    lambda m: st.sampled_from([f"{m / 1000:.3f}", f"{m / 1000:g}", f"{m / 1000:.4f}", f"{m / 1000}"])
)
size_texts = st.sampled_from(["0", "0.0", "1", "2.5", "100", "3149725.72", "10.0", "1e3", "0.000001"])
levels = st.lists(st.builds(Level, price_texts, size_texts), max_size=40)
changes = st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), price_texts, size_texts), max_size=60)
special = st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "€", "\u2028", "/"])
any_text = st.text(
    st.one_of(special, st.characters(exclude_categories=["Cs"])), max_size=12
)  # escapes, non-ASCII, controls


@settings(max_examples=150, deadline=None)
@given(levels, levels, changes, any_text, any_text, any_text, any_text, st.booleans(), st.integers(0, 99))
def test_incremental_hash_is_byte_identical_to_the_full_construction(
    bids: list[Level],
    asks: list[Level],
    deltas: list[tuple[str, str, str]],
    market: str,
    token: str,
    ltp: str,
    min_size: str,
    neg_risk: bool,
    resnap_at: int,
) -> None:
    book = OrderBook(token, market)
    book.min_order_size, book.neg_risk = min_size, neg_risk
    book.apply_snapshot(BookMsg(market, token, "1790658661234", bids, asks, tick_size="0.001"), NOW)
    book.set_last_trade_price(ltp)
    assert book.compute_hash() == full_rebuild_hash(book) == official_hash(book)
    for i, (side, price, size) in enumerate(deltas):
        book.apply_change(side, price, size, str(1790658661235 + i))
        if i == resnap_at:  # a new snapshot in the middle replaces everything
            book.apply_snapshot(BookMsg(market, token, str(1790658661300 + i), asks, bids), NOW)
        if i % 5 == 0 or i == len(deltas) - 1:
            assert book.compute_hash() == full_rebuild_hash(book) == official_hash(book)
    bid_prices, ask_prices = list(book.bids), list(book.asks)
    assert book.best_bid == (max(bid_prices) if bid_prices else None)
    assert book.best_ask == (min(ask_prices) if ask_prices else None)
    top_bids, top_asks = book.depth(3)
    assert [p for p, _ in top_bids] == sorted(bid_prices, reverse=True)[:3]
    assert [p for p, _ in top_asks] == sorted(ask_prices)[:3]


def test_hash_needs_every_rest_field() -> None:
    book = OrderBook(TOKEN, MARKET)
    book.apply_snapshot(BookMsg(MARKET, TOKEN, "1", [Level("0.4", "1")], [], tick_size="0.01"), NOW)
    assert book.compute_hash() is None
    book.min_order_size = "5"
    assert book.compute_hash() is None
    book.neg_risk = True
    assert book.compute_hash() == official_hash(book)


# ---- deferred verification ---------------------------------------------------------------


class Venue:
    """The server side of one token: the true book, and the v2 frames describing it."""

    def __init__(self) -> None:
        self.truth = OrderBook(TOKEN, MARKET)
        self.truth.min_order_size, self.truth.neg_risk = "5", False
        bids = [Level(f"0.{p:02d}", "100") for p in range(20, 50)]
        asks = [Level(f"0.{p:02d}", "100") for p in range(90, 50, -1)]
        self.ms = 1790658661234
        self.snapshot = BookMsg(
            MARKET, TOKEN, str(self.ms), bids, asks, tick_size="0.01", last_trade_price=""
        )
        self.truth.apply_snapshot(self.snapshot, NOW)
        self.snapshot.hash = self.truth.compute_hash() or ""

    def book_frame(self) -> str:
        return msgspec.json.encode(self.snapshot).decode()

    def change(self, side: str, price: str, size: str) -> str:
        self.ms += 10
        self.truth.apply_change(side, price, size, str(self.ms))
        entry = {
            "asset_id": TOKEN, "price": price, "size": size, "side": side,
            "hash": self.truth.compute_hash(),
            "best_bid": str(self.truth.best_bid or 0), "best_ask": str(self.truth.best_ask or 0),
        }  # fmt: skip
        msg = {
            "market": MARKET,
            "price_changes": [entry],
            "timestamp": str(self.ms),
            "event_type": "price_change",
        }
        return json.dumps(msg)

    def trade(self, price: str) -> str:
        self.ms += 10
        self.truth.set_last_trade_price(price)
        return json.dumps(
            {"event_type": "last_trade_price", "asset_id": TOKEN, "market": MARKET, "price": price,
             "side": "BUY", "size": "10", "timestamp": str(self.ms)}
        )  # fmt: skip


def deferred_keeper(within: float = 0.5) -> tuple[BookKeeper, Venue]:
    registry = BookRegistry()
    registry.track(TOKEN, MARKET)
    keeper = BookKeeper(registry, verify_within=within)
    registry.ensure(TOKEN, MARKET).min_order_size = "5"
    registry.books[TOKEN].neg_risk = False
    venue = Venue()
    keeper.handle_frame(venue.book_frame(), NOW - timedelta(seconds=10))
    keeper.verify_due(NOW)  # the snapshot's own check is done
    assert keeper.verified(TOKEN)
    return keeper, venue


def test_deferred_checks_run_by_the_deadline_not_per_message() -> None:
    keeper, venue = deferred_keeper()
    book = keeper.registry.books[TOKEN]
    checks = keeper.stats.hash_checks
    for i in range(20):  # 20 messages in 0.38 s: no full check yet
        keeper.handle_frame(venue.change("BUY", "0.30", str(10 + i)), NOW + timedelta(seconds=0.02 * i))
    assert keeper.stats.hash_checks == checks and book.check_pending and not book.verified
    keeper.handle_frame(venue.change("BUY", "0.31", "5"), NOW + timedelta(seconds=0.6))
    assert keeper.stats.hash_checks == checks + 1 and book.verified
    keeper.handle_frame(venue.change("BUY", "0.32", "5"), NOW + timedelta(seconds=0.7))
    keeper.verify_due(NOW + timedelta(seconds=1.0))  # not yet due (0.7 + 0.5)
    assert book.check_pending
    keeper.verify_due(NOW + timedelta(seconds=1.2))  # a quiet book is checked on the timer
    assert keeper.stats.hash_checks == checks + 2 and book.verified and not keeper.wanted


def test_lost_delta_below_the_top_is_caught_within_the_interval() -> None:
    keeper, venue = deferred_keeper()
    venue.change("BUY", "0.25", "7")  # lost: never reaches the keeper
    t = NOW + timedelta(seconds=1)
    keeper.handle_frame(venue.change("SELL", "0.80", "3"), t)
    assert not keeper.wanted  # the top matched: the check waits for its deadline
    keeper.handle_frame(venue.change("SELL", "0.81", "3"), t + timedelta(seconds=0.3))
    keeper.verify_due(t + timedelta(seconds=0.5))
    assert keeper.wanted == {TOKEN: "hash_mismatch"} and keeper.stats.hash_mismatches == 1
    assert keeper.registry.books[TOKEN].hash_status == "corrupted"
    assert not keeper.verified(TOKEN)


def test_lost_delta_at_the_top_is_caught_at_the_next_message() -> None:
    keeper, venue = deferred_keeper()
    venue.change("BUY", "0.50", "7")  # lost: a new best bid
    keeper.handle_frame(venue.change("SELL", "0.80", "3"), NOW + timedelta(seconds=0.1))
    assert keeper.stats.top_mismatches == 1 and keeper.wanted == {TOKEN: "hash_mismatch"}


def test_last_trade_price_settles_a_pending_check_first() -> None:
    keeper, venue = deferred_keeper()
    keeper.handle_frame(venue.change("BUY", "0.30", "1"), NOW)
    keeper.handle_frame(venue.trade("0.45"), NOW + timedelta(seconds=0.1))  # a hash input changes
    keeper.handle_frame(venue.change("BUY", "0.31", "1"), NOW + timedelta(seconds=0.2))
    keeper.verify_due(NOW + timedelta(seconds=2))
    assert keeper.stats.hash_mismatches == 0 and keeper.stats.hash_checks == 3  # book, pre-trade, last
    assert keeper.verified(TOKEN)


def test_verified_forces_the_pending_check() -> None:
    keeper, venue = deferred_keeper(within=60)
    book = keeper.registry.books[TOKEN]
    keeper.handle_frame(venue.change("SELL", "0.85", "0"), NOW)
    assert book.check_pending and not book.verified
    assert keeper.verified(TOKEN) and book.verified and not book.check_pending
    book.apply_change("SELL", "0.86", "1")  # a change that came without a hash
    assert not book.verified and not keeper.verified(TOKEN)
    assert not keeper.verified("not-a-token")
