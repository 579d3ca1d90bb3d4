"""Trades normalizer on the recorded real payloads, plus dedupe-key properties."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polytape.normalize.open_interest import normalize_open_interest
from polytape.normalize.trades import (
    SOURCE_V1,
    SOURCE_V2,
    TradePayloadError,
    dedupe_key,
    normalize_trade_v1,
    normalize_trade_v2,
    normalize_trades,
)
from tests.support.fixtures import fixture_json

NOW = datetime(2026, 11, 1, tzinfo=UTC)


load = fixture_json


def v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """The same fill as /v2/trades serves it (snake_case)."""
    names = {
        "proxyWallet": "proxy_wallet",
        "asset": "token_id",
        "conditionId": "condition_id",
        "transactionHash": "transaction_hash",
        "outcomeIndex": "outcome_index",
        "eventSlug": "event_slug",
        "profileImage": "profile_image",
        "profileImageOptimized": "profile_image_optimized",
    }
    return {names.get(k, k): v for k, v in raw.items()}


def test_v1_fixture_rows() -> None:
    raw = load("data_trades.json")
    first = normalize_trade_v1(raw[0], NOW)
    assert first["wallet"] == "0x0f3433d8b7596000bf1046aa822308d93cf67684"
    assert first["token_id"] == raw[0]["asset"]
    assert first["condition_id"] == "0xc5943cca27ce657f519619520b1664829b1209f9a5ef9266be7f2954be1b0260"
    assert first["side"] == "BUY"
    assert first["outcome"] == "Yes"
    assert first["outcome_index"] == 0
    assert first["size"] == 15.0
    assert first["price"] == 0.765
    assert first["usd_value"] == pytest.approx(11.475)
    assert first["trade_ts"] == datetime.fromtimestamp(1783008527, UTC)
    assert first["trade_ts"].tzinfo is not None
    assert first["transaction_hash"] == raw[0]["transactionHash"]
    assert first["source"] == SOURCE_V1
    assert first["ingested_at"] == NOW
    # same second, same price, same token: two different fills, two keys
    second = normalize_trade_v1(raw[1], NOW)
    assert second["dedupe_key"] != first["dedupe_key"]


def test_v2_fixture_rows() -> None:
    raw = load("data_v2_trades.json")["data"]
    rows = [normalize_trade_v2(r, NOW) for r in raw]
    assert [r["side"] for r in rows] == ["SELL", "BUY", "BUY"]
    assert rows[1]["price"] == 0.709999959  # float noise kept as served
    assert rows[2]["outcome"] == "Hanwha Life Esports"
    assert rows[2]["outcome_index"] == 1
    assert rows[0]["usd_value"] == pytest.approx(92.59 * 0.7)
    assert all(r["source"] == SOURCE_V2 for r in rows)
    assert len({r["dedupe_key"] for r in rows}) == 3


def test_same_fill_from_v1_and_v2_has_one_key() -> None:
    for raw in load("data_trades.json"):
        assert (
            normalize_trade_v1(raw, NOW)["dedupe_key"] == normalize_trade_v2(v1_to_v2(raw), NOW)["dedupe_key"]
        )


def test_two_fills_in_one_transaction_are_two_rows() -> None:
    raw = load("data_trades.json")[0]
    other = {**raw, "size": 7, "price": 0.766}
    page = normalize_trades([raw, other, copy.deepcopy(raw)], NOW, SOURCE_V1)
    assert len(page.rows) == 2  # the repeated fill is kept once
    assert not page.rejected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"size": -3}, "size is absurd"),
        ({"size": 0}, "size is absurd"),
        ({"size": "15"}, "size is not a number"),
        ({"size": True}, "size is not a number"),
        ({"size": 1e12}, "size is absurd"),
        ({"price": 1.5}, "price is absurd"),
        ({"price": -0.2}, "price is absurd"),
        ({"price": float("nan")}, "price is absurd"),
        ({"timestamp": "1783008527"}, "timestamp is not a number"),
        ({"timestamp": 1783008527000}, "timestamp is absurd"),
        ({"timestamp": 12}, "timestamp is absurd"),
        ({"side": "HOLD"}, "side is not BUY or SELL"),
        ({"asset": 123}, "asset is not a string"),
        ({"outcomeIndex": "0"}, "outcome index"),
    ],
)
def test_bad_fields_are_rejected(change: dict[str, Any], reason: str) -> None:
    raw = {**load("data_trades.json")[0], **change}
    with pytest.raises(TradePayloadError, match=reason):
        normalize_trade_v1(raw, NOW)


@pytest.mark.parametrize(
    "name", ["proxyWallet", "asset", "conditionId", "side", "size", "price", "timestamp"]
)
def test_missing_required_field_is_rejected(name: str) -> None:
    raw = load("data_trades.json")[0]
    del raw[name]
    with pytest.raises(TradePayloadError, match="missing"):
        normalize_trade_v1(raw, NOW)


def test_page_keeps_good_rows_and_rejects_bad_ones() -> None:
    good = load("data_trades.json")
    bad_size = {**good[0], "size": -1}
    no_condition = {k: v for k, v in good[1].items() if k != "conditionId"}
    page = normalize_trades([good[0], bad_size, "junk", no_condition, good[1]], NOW, SOURCE_V1)
    assert len(page.rows) == 2
    assert [r.reason for r in page.rejected] == [
        "size is absurd: -1",
        "trade is not an object: str",
        "missing conditionId",
    ]
    assert page.rejected[0].raw == bad_size
    assert all(r.source == "data:trades" for r in page.rejected)


def test_missing_hash_falls_back_to_the_seed_tuple() -> None:
    raw = {**load("data_trades.json")[0], "transactionHash": ""}
    row = normalize_trade_v1(raw, NOW)
    assert row["transaction_hash"] is None
    assert row["dedupe_key"] != normalize_trade_v1(load("data_trades.json")[0], NOW)["dedupe_key"]
    again = normalize_trade_v1({**raw, "transactionHash": None}, NOW)
    assert again["dedupe_key"] == row["dedupe_key"]


FILL = st.fixed_dictionaries(
    {
        "transaction_hash": st.one_of(st.none(), st.from_regex(r"0x[0-9a-f]{64}", fullmatch=True)),
        "wallet": st.from_regex(r"0x[0-9a-f]{40}", fullmatch=True),
        "condition_id": st.from_regex(r"0x[0-9a-f]{64}", fullmatch=True),
        "token_id": st.from_regex(r"[1-9][0-9]{5,76}", fullmatch=True),
        "side": st.sampled_from(["BUY", "SELL"]),
        "size": st.floats(min_value=0.000001, max_value=1e9, allow_nan=False),
        "price": st.floats(min_value=0.0001, max_value=1.0, allow_nan=False),
        "trade_ts": st.integers(min_value=1_600_000_000, max_value=1_800_000_000),
    }
)


@given(FILL)
def test_key_ignores_case_and_number_spelling(fill: dict[str, Any]) -> None:
    shouted = {
        **fill,
        "wallet": fill["wallet"].upper().replace("0X", "0x"),
        "transaction_hash": fill["transaction_hash"].upper() if fill["transaction_hash"] else None,
        "side": fill["side"].lower(),
    }
    as_int = {**fill, "size": int(fill["size"])} if float(fill["size"]).is_integer() else fill
    assert dedupe_key(**fill) == dedupe_key(**shouted) == dedupe_key(**as_int)


@given(FILL, st.sampled_from(["token_id", "wallet", "side", "size", "price", "trade_ts"]))
def test_key_changes_with_every_identity_field(fill: dict[str, Any], name: str) -> None:
    other = dict(fill)
    if name == "side":
        other["side"] = "SELL" if fill["side"] == "BUY" else "BUY"
    elif name in ("size", "price"):
        other[name] = fill[name] / 2
    elif name == "trade_ts":
        other[name] = fill[name] + 1
    else:
        other[name] = fill[name][:-1] + ("1" if fill[name][-1] != "1" else "2")
    assert dedupe_key(**fill) != dedupe_key(**other)


def test_open_interest_rows_gaps_and_rejects() -> None:
    ts = NOW
    a, b, c, d = ("0x" + ch * 64 for ch in "abcd")
    items = [
        {"market": a, "value": 1234.5},
        {"market": b, "value": "n/a"},
        {"value": 3},
        {"market": "0x" + "e" * 64, "value": 9},
        {"market": d, "value": 0},
    ]
    batch = normalize_open_interest(items, [a, b, c, d], ts)
    assert batch.rows == [
        {"condition_id": a, "ts": ts, "open_interest": 1234.5},
        {"condition_id": d, "ts": ts, "open_interest": 0.0},
    ]
    assert batch.missing == [b, c]  # a bad row and an absent market are gaps, not zeros
    assert [reason for reason, _ in batch.rejected] == [
        "value is not a number: 'n/a'",
        "missing or bad market: None",
    ]
    assert batch.unexpected == 1


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"price": 1e-300}, "outside the tick grid's range"),
        ({"price": 1.0}, "outside the tick grid's range"),
        ({"price": 0.99995}, "outside the tick grid's range"),
        ({"price": 1.5}, "price is absurd"),
        ({"size": 9.9e9, "price": 0.49}, "size is absurd"),
        ({"size": 5e8, "price": 0.5}, "usd value is absurd"),
    ],
)
def test_implausible_values_are_rejected(change: dict[str, Any], needle: str) -> None:
    """Issue 12 item 5: a $4.85 B trade or a price of 1e-300 is not stored."""
    raw = {**load("data_trades.json")[0], **change}
    page = normalize_trades([raw], NOW, SOURCE_V1)
    assert not page.rows and len(page.rejected) == 1 and needle in page.rejected[0].reason


def test_trade_ceilings_are_settable() -> None:
    from polytape.normalize.trades import TradeLimits

    raw = {**load("data_trades.json")[0], "size": 1000.0, "price": 0.5}
    assert normalize_trades([raw], NOW, SOURCE_V1).rows
    page = normalize_trades([raw], NOW, SOURCE_V1, limits=TradeLimits(max_size=1e9, max_usd=100.0))
    assert not page.rows and "usd value is absurd" in page.rejected[0].reason
    page = normalize_trades([raw], NOW, SOURCE_V1, limits=TradeLimits(max_size=999.0))
    assert not page.rows and "size is absurd" in page.rejected[0].reason
