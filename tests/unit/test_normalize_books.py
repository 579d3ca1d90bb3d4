"""CLOB book payloads → typed messages, on recorded real payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from polytape.normalize.books import (
    BestBidAskMsg,
    BookMsg,
    LastTradePriceMsg,
    MarketResolvedMsg,
    NewMarketMsg,
    PriceChangeMsg,
    Rejected,
    TextFrame,
    TickSizeChangeMsg,
    decode_frame,
    level_changes,
    parse_rest_book,
    parse_timestamp,
    timestamp_ms,
)
from tests.support.fixtures import fixture_text

text = fixture_text


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ws_book.json", BookMsg),
        ("ws_price_change_v0_2024.json", PriceChangeMsg),
        ("ws_price_change_v1.json", PriceChangeMsg),
        ("ws_price_change_v2.json", PriceChangeMsg),
        ("ws_tick_size_change.json", TickSizeChangeMsg),
        ("ws_last_trade_price.json", LastTradePriceMsg),
        ("ws_last_trade_price_doc.json", LastTradePriceMsg),
        ("ws_best_bid_ask.json", BestBidAskMsg),
        ("ws_new_market.json", NewMarketMsg),
        ("ws_market_resolved.json", MarketResolvedMsg),
    ],
)
def test_every_recorded_event_decodes(name: str, cls: type) -> None:
    (msg,) = decode_frame(text(name))
    assert isinstance(msg, cls)


def test_array_frame_keeps_order() -> None:
    items = decode_frame(text("ws_sequence_book_then_price_changes.json"))
    assert [type(i).__name__ for i in items] == ["BookMsg"] + ["PriceChangeMsg"] * 4


def test_price_change_shapes_flatten_alike() -> None:
    (v0,) = decode_frame(text("ws_price_change_v0_2024.json"))
    (v1,) = decode_frame(text("ws_price_change_v1.json"))
    (v2,) = decode_frame(text("ws_price_change_v2.json"))
    assert (
        isinstance(v0, PriceChangeMsg) and isinstance(v1, PriceChangeMsg) and isinstance(v2, PriceChangeMsg)
    )
    c0 = list(level_changes(v0))
    assert [(c.side, c.price, c.size) for c in c0] == [("SELL", "0.514", "21574.08")]
    assert c0[0].hash == "bf32b3746fff40c76c98021b7f3f07261169dd26"
    c1 = list(level_changes(v1))
    assert [c.price for c in c1] == ["0.4", "0.5", "0.3"]
    assert [c.hash for c in c1] == [None, None, "3cd4d61e042c81560c9037ece0c61f3b1a8fbbdd"]
    assert {c.asset_id for c in c1} == {v1.asset_id}
    c2 = list(level_changes(v2))
    assert [(c.side, c.price, c.size) for c in c2] == [("BUY", "0.301", "1000"), ("SELL", "0.699", "1000")]
    assert c2[0].hash == "b7623b6417b3ae46dbe5d608a65474c9cec84ef9"
    assert len({c.asset_id for c in c2}) == 2  # both outcome tokens in one message


@pytest.mark.parametrize("frame", ["PONG", "NO NEW ASSETS", "INVALID OPERATION"])
def test_text_frames(frame: str) -> None:
    assert decode_frame(frame) == [TextFrame(frame)]


def test_bad_items_are_rejected_without_losing_good_ones() -> None:
    good = json.loads(text("ws_tick_size_change.json"))
    frame = json.dumps([{"event_type": "sim_mystery"}, good, {"event_type": "book", "market": 5}, 7])
    items = decode_frame(frame)
    assert isinstance(items[1], TickSizeChangeMsg)
    kinds = [i.source for i in items if isinstance(i, Rejected)]
    assert kinds == ["unknown_event:sim_mystery", "invalid:book", "not_an_object"]


def test_malformed_json_and_stray_text() -> None:
    (bad,) = decode_frame('{"event_type": "book", "market": "0x')
    assert isinstance(bad, Rejected) and bad.source == "malformed_json"
    (stray,) = decode_frame("HELLO")
    assert isinstance(stray, Rejected) and stray.source == "text"


def test_price_change_without_levels_is_rejected() -> None:
    (item,) = decode_frame('{"event_type": "price_change", "market": "0xabc", "timestamp": "1"}')
    assert isinstance(item, Rejected) and item.source == "invalid:price_change"


def test_rest_book_from_capture() -> None:
    raw = json.loads(text("clob_book.json"))
    book = parse_rest_book(raw)
    assert isinstance(book, BookMsg)
    assert book.min_order_size == "5" and book.neg_risk is True and book.last_trade_price == ""
    assert isinstance(parse_rest_book({"asset_id": "1"}), Rejected)
    assert isinstance(parse_rest_book([1, 2]), Rejected)


def test_2024_rest_book_without_new_fields() -> None:
    book = parse_rest_book(json.loads(text("clob_book_2024.json")))
    assert isinstance(book, BookMsg) and book.tick_size is None and book.neg_risk is None


def test_timestamps_ms_and_rfc3339_agree() -> None:
    when = datetime(2026, 8, 3, 5, 21, 8, 581000, tzinfo=UTC)
    assert parse_timestamp("1785734468581") == when
    assert parse_timestamp("2026-08-03T05:21:08.581Z") == when
    assert parse_timestamp("2026-08-03T05:21:08.581+00:00") == when
    assert parse_timestamp(1785734468581) == when
    assert timestamp_ms("1785734468") == 1785734468000  # seconds are scaled up
    for bad in ("yesterday", "", "9" * 20):
        with pytest.raises(ValueError):
            timestamp_ms(bad)
