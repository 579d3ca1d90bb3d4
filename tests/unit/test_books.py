"""The pure book state and the feed's keeper, on recorded real payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from polytape.bookfeed.keeper import SAMPLES_PER_KIND, BookKeeper
from polytape.books import BookRegistry, OrderBook
from polytape.normalize.books import (
    BookMsg,
    Level,
    PriceChangeMsg,
    decode_frame,
    level_changes,
    parse_rest_book,
)
from tests.support.fixtures import fixture_text

NOW = datetime(2026, 9, 29, 12, 0, tzinfo=UTC)


load = fixture_text


def sequence() -> tuple[BookMsg, list[PriceChangeMsg]]:
    book, *changes = decode_frame(load("ws_sequence_book_then_price_changes.json"))
    assert isinstance(book, BookMsg)
    assert all(isinstance(c, PriceChangeMsg) for c in changes)
    return book, changes  # type: ignore[return-value]


def ws_book_with_rest_fields(msg: BookMsg) -> OrderBook:
    book = OrderBook(msg.asset_id)
    book.min_order_size, book.neg_risk = "5", False  # REST-only hash inputs (reference §3.6)
    book.apply_snapshot(msg, NOW)
    return book


# ---- OrderBook --------------------------------------------------------------------------


def test_rest_capture_hash_reproduces_and_top_of_book() -> None:
    msg = parse_rest_book(json.loads(load("clob_book.json")))
    assert isinstance(msg, BookMsg)
    book = OrderBook(msg.asset_id)
    book.apply_snapshot(msg, NOW, source="rest")
    assert book.compute_hash() == msg.hash
    assert book.verify(msg.hash) == "verified"
    assert book.best_ask is None and book.spread is None and book.mid is None
    assert book.best_bid == max(float(lvl.price) for lvl in msg.bids)
    assert book.neg_risk is True and book.tick_size == "0.001" and book.min_order_size == "5"
    assert book.updated_at == datetime(2026, 8, 3, 5, 21, 8, 581000, tzinfo=UTC)


def test_ws_book_hash_needs_rest_fields() -> None:
    (msg,) = decode_frame(load("ws_book.json"))
    assert isinstance(msg, BookMsg)
    bare = OrderBook(msg.asset_id)
    bare.apply_snapshot(msg, NOW)
    assert bare.compute_hash() is None and bare.verify(msg.hash) == "unknown"
    assert ws_book_with_rest_fields(msg).verify(msg.hash) == "verified"


def test_real_sequence_every_change_hash_and_best_prices_match() -> None:
    snapshot, changes = sequence()
    book = ws_book_with_rest_fields(snapshot)
    assert book.verify(snapshot.hash) == "verified"
    checked = 0
    for msg in changes:
        assert msg.price_changes is not None
        for change in msg.price_changes:
            if change.asset_id != book.token_id:
                continue
            book.apply_change(change.side, change.price, change.size, msg.timestamp)
            assert book.compute_hash() == change.hash
            assert book.best_bid == float(change.best_bid or 0)
            assert book.best_ask == float(change.best_ask or 0)
            checked += 1
    assert checked == 4


def test_wrong_last_trade_price_is_detected() -> None:
    snapshot, _ = sequence()
    book = ws_book_with_rest_fields(snapshot)
    book.set_last_trade_price("0.5")
    assert book.verify(snapshot.hash) == "corrupted"


def test_depth_spread_and_zero_size_removes() -> None:
    snapshot, _ = sequence()
    book = ws_book_with_rest_fields(snapshot)
    bids, asks = book.depth(3)
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    best = book.best_bid
    assert best is not None and bids[0][0] == best
    book.apply_change("BUY", str(best), "0", "1790658662000")
    assert book.best_bid is not None and book.best_bid < best
    assert book.spread == (book.best_ask or 0) - book.best_bid


def test_absurd_levels_are_refused() -> None:
    book = OrderBook("1")
    for side, price, size in [
        ("BUY", "1.5", "1"),
        ("SELL", "0.5", "-3"),
        ("HOLD", "0.5", "1"),
        ("BUY", "x", "1"),
    ]:
        try:
            book.apply_change(side, price, size, "1")
        except ValueError:
            continue
        raise AssertionError(f"accepted {side} {price} {size}")
    assert not book.bids and not book.asks


def test_diff_tracks_only_changed_levels() -> None:
    snapshot, _ = sequence()
    book = ws_book_with_rest_fields(snapshot)
    first = book.take_diff()
    assert first is not None and first.full and len(first.upserts) == len(snapshot.bids) + len(snapshot.asks)
    assert book.take_diff() is None
    book.apply_change("BUY", "0.301", "1000", "1790658674035")
    book.apply_change("SELL", snapshot.asks[-1].price, "0", "1790658674035")
    diff = book.take_diff()
    assert diff is not None and not diff.full
    assert diff.upserts == [("BUY", 0.301, 1000.0)]
    assert diff.deletes == [("SELL", float(snapshot.asks[-1].price))]
    again = BookMsg(snapshot.market, snapshot.asset_id, "1790658680000", snapshot.bids, snapshot.asks)
    book.apply_snapshot(again, NOW)  # back to the snapshot: exactly the two levels differ
    diff = book.take_diff()
    assert diff is not None
    assert sorted((s, p) for s, p, _ in diff.upserts) == [("SELL", float(snapshot.asks[-1].price))]
    assert diff.deletes == [("BUY", 0.301)]


prices = st.integers(min_value=1, max_value=99).map(lambda c: f"0.{c:02d}")
sizes = st.sampled_from(["0", "0", "1", "2.5", "100", "3149725.72", "10.0"])
deltas = st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), prices, sizes), max_size=80)


@settings(max_examples=200, deadline=None)
@given(deltas)
def test_random_deltas_equal_a_dict_model(changes: list[tuple[str, str, str]]) -> None:
    book = OrderBook("1", "0xm")
    book.apply_snapshot(BookMsg("0xm", "1", "1", [Level("0.10", "5")], [Level("0.90", "7")]), NOW)
    model: dict[tuple[str, float], float] = {("BUY", 0.10): 5.0, ("SELL", 0.90): 7.0}
    stored = dict(model)
    book.take_diff()
    for i, (side, price, size) in enumerate(changes):
        book.apply_change(side, price, size, str(2 + i))
        if float(size) == 0:
            model.pop((side, float(price)), None)
        else:
            model[(side, float(price))] = float(size)
        if i % 7 == 0:  # a flush now and then: the store must follow the diffs exactly
            diff = book.take_diff()
            if diff is not None:
                for s, p in diff.deletes:
                    stored.pop((s, p), None)
                stored.update({(s, p): v for s, p, v in diff.upserts})
    diff = book.take_diff()
    if diff is not None:
        for s, p in diff.deletes:
            stored.pop((s, p), None)
        stored.update({(s, p): v for s, p, v in diff.upserts})
    assert {(s, p): v for s, p, v in book.levels()} == model == stored
    bids = [p for (s, p) in model if s == "BUY"]
    asks = [p for (s, p) in model if s == "SELL"]
    assert book.best_bid == (max(bids) if bids else None)
    assert book.best_ask == (min(asks) if asks else None)


# ---- BookKeeper --------------------------------------------------------------------------------


def keeper_on_sequence() -> tuple[BookKeeper, BookMsg, list[PriceChangeMsg]]:
    snapshot, changes = sequence()
    registry = BookRegistry()
    registry.track(snapshot.asset_id, snapshot.market)
    keeper = BookKeeper(registry)
    book = registry.ensure(snapshot.asset_id)
    book.min_order_size, book.neg_risk = "5", False
    return keeper, snapshot, changes


def test_keeper_verifies_the_real_sequence() -> None:
    keeper, snapshot, _ = keeper_on_sequence()
    changed = keeper.handle_frame(load("ws_sequence_book_then_price_changes.json"), NOW)
    assert changed == {snapshot.asset_id}  # the sibling token is not tracked
    assert keeper.stats.hash_mismatches == 0 and not keeper.wanted
    assert keeper.registry.books[snapshot.asset_id].hash_status == "verified"
    assert keeper.stats.by_type == {"book": 1, "price_change": 4}


def test_keeper_missed_delta_asks_for_a_resync_and_buffers() -> None:
    keeper, snapshot, changes = keeper_on_sequence()
    frames = json.loads(load("ws_sequence_book_then_price_changes.json"))
    keeper.handle_frame(json.dumps(frames[0]), NOW)
    keeper.handle_frame(json.dumps(frames[2]), NOW)  # frames[1] was lost
    assert keeper.stats.hash_mismatches == 1 and keeper.wanted == {snapshot.asset_id: "hash_mismatch"}
    keeper.begin_fetch([snapshot.asset_id])
    keeper.handle_frame(json.dumps(frames[3]), NOW)  # held back while the snapshot is in flight
    assert len(keeper.buffers[snapshot.asset_id]) == 1
    # The REST snapshot reflects the book after frames[1..2]; frame 3 must be replayed on it.
    truth = ws_book_with_rest_fields(snapshot)
    for msg in changes[:2]:
        for ch in level_changes(msg):
            if ch.asset_id == truth.token_id:
                truth.apply_change(ch.side, ch.price, ch.size, msg.timestamp)
    rest = BookMsg(
        snapshot.market,
        snapshot.asset_id,
        truth.timestamp,
        [Level(p, s) for p, s in truth.side_texts("BUY")],
        [Level(p, s) for p, s in truth.side_texts("SELL")],
        hash=truth.compute_hash() or "",
        tick_size=truth.tick_size,
        last_trade_price=truth.last_trade_price,
        min_order_size="5",
        neg_risk=False,
    )
    keeper.apply_rest(rest, NOW)
    book = keeper.registry.books[snapshot.asset_id]
    assert book.hash_status == "verified" and not keeper.wanted and not keeper.buffers
    keeper.handle_frame(json.dumps(frames[4]), NOW)
    assert book.hash_status == "verified" and keeper.stats.hash_mismatches == 1


def test_keeper_delta_for_unknown_book_and_tick_size_change() -> None:
    keeper, snapshot, _ = keeper_on_sequence()
    keeper.registry.discard(snapshot.asset_id)
    frames = json.loads(load("ws_sequence_book_then_price_changes.json"))
    keeper.handle_frame(json.dumps(frames[1]), NOW)
    assert keeper.stats.unknown_book_deltas == 1 and keeper.wanted[snapshot.asset_id] == "unknown_book"
    keeper.handle_frame(json.dumps(frames[0]), NOW)  # the server's snapshot is the heal
    assert not keeper.wanted and snapshot.asset_id in keeper.registry
    tick = json.loads(load("ws_tick_size_change.json"))
    tick["asset_id"] = snapshot.asset_id
    keeper.handle_frame(json.dumps(tick), NOW)
    assert snapshot.asset_id not in keeper.registry  # thrown away until a snapshot comes
    assert keeper.wanted[snapshot.asset_id] == "tick_size"


def test_keeper_rejects_are_counted_and_sampled() -> None:
    keeper, _, _ = keeper_on_sequence()
    for i in range(SAMPLES_PER_KIND + 30):
        keeper.handle_frame('{"event_type": "mystery"}', NOW + timedelta(milliseconds=i))
        keeper.handle_frame("{broken", NOW)
    assert keeper.stats.rejected["unknown_event:mystery"] == SAMPLES_PER_KIND + 30
    kinds = [r.source for r, _ in keeper.rejected]
    assert kinds.count("unknown_event:mystery") == SAMPLES_PER_KIND
    assert kinds.count("malformed_json") == SAMPLES_PER_KIND
    keeper.handle_frame('{"event_type": "mystery"}', NOW + timedelta(minutes=2))
    assert [r.source for r, _ in keeper.rejected].count("unknown_event:mystery") == SAMPLES_PER_KIND + 1


def test_keeper_last_trade_price_feeds_the_hash() -> None:
    keeper, snapshot, _ = keeper_on_sequence()
    keeper.handle_frame(load("ws_sequence_book_then_price_changes.json"), NOW)
    trade = json.loads(load("ws_last_trade_price.json"))
    trade.update(asset_id=snapshot.asset_id, price="0.33")
    keeper.handle_frame(json.dumps(trade), NOW)
    assert keeper.registry.books[snapshot.asset_id].last_trade_price == "0.33"


def test_keeper_applies_only_the_connections_own_tokens() -> None:
    (msg,) = decode_frame(load("ws_price_change_v2.json"))
    assert isinstance(msg, PriceChangeMsg) and msg.price_changes is not None
    yes, no = (c.asset_id for c in msg.price_changes)
    registry = BookRegistry()
    keeper = BookKeeper(registry, verify=False)
    for token_id in (yes, no):  # both followed, on different connections
        registry.track(token_id, msg.market)
        registry.ensure(token_id).apply_snapshot(BookMsg(msg.market, token_id, "1", [], []), NOW)
    assert keeper.handle_frame(load("ws_price_change_v2.json"), NOW, owned={yes}) == {yes}
    assert keeper.handle_frame(load("ws_price_change_v2.json"), NOW, owned={no}) == {no}
    assert registry.books[yes].best_bid == 0.301 and registry.books[no].best_ask == 0.699
