"""The Gamma normalizer on recorded real payloads (tests/fixtures/gamma_*.json)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polytape.normalize.gamma import (
    GammaPayloadError,
    normalize_event,
    normalize_events_page,
    normalize_market,
    normalize_tag,
    parse_gamma_datetime,
    sport_tag_ids,
)
from tests.support.fixtures import fixture_json

NOW = datetime(2026, 3, 11, 16, 0, tzinfo=UTC)


load = fixture_json


@pytest.fixture
def events_page() -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = load("gamma_events_page.json")
    return page


@pytest.fixture
def market() -> dict[str, Any]:
    raw: dict[str, Any] = load("gamma_market.json")
    return raw


@pytest.fixture
def closed_market() -> dict[str, Any]:
    raw: dict[str, Any] = load("gamma_market_closed_resolved.json")
    return raw


def test_event_page_becomes_rows(events_page: list[dict[str, Any]]) -> None:
    raw_event = events_page[0]
    page = normalize_events_page(events_page, NOW)
    assert page.rejected == [] and page.skipped == 0
    (event,) = page.events
    assert event == {
        "event_id": "30829",
        "slug": "democratic-presidential-nominee-2028",
        "title": "Democratic Presidential Nominee 2028",
        "active": True,
        "closed": False,
        "neg_risk": True,
        "neg_risk_market_id": "0x2c3d7e0eee6f058be3006baabf0d54a07da254ba47fe6e3e095e7990c7814700",
        "start_date": datetime(2025, 7, 11, 18, 41, 17, 827458, tzinfo=UTC),
        "end_date": datetime(2028, 11, 7, tzinfo=UTC),
        "volume": 799823812.487094,  # event-level numbers are JSON numbers
        "liquidity": 43042905.16152,
        "first_seen_at": NOW,
        "updated_at": NOW,
    }
    assert [m["condition_id"] for m in page.markets] == [m["conditionId"] for m in raw_event["markets"]]
    tag_ids = [t["id"] for t in raw_event["tags"]]
    assert [t["tag_id"] for t in page.tags] == tag_ids
    assert page.event_tags == [{"event_id": "30829", "tag_id": t} for t in tag_ids]
    # nested markets carry no tags: they inherit the event's
    assert len(page.market_tags) == len(tag_ids) * len(page.markets)
    assert {t["tag_id"] for t in page.market_tags} == set(tag_ids)
    assert all(isinstance(t["tag_id"], str) for t in page.tags)


def test_nested_market_quirks(events_page: list[dict[str, Any]]) -> None:
    raw = events_page[0]["markets"][0]
    page = normalize_events_page(events_page, NOW)
    m = page.markets[0]
    assert m["gamma_market_id"] == "559657" and m["event_id"] == "30829"
    assert m["outcomes"] == ["Yes", "No"]
    assert m["outcome_prices"] == [0.0105, 0.9895]  # JSON string of numeric strings → numbers
    token_ids = json.loads(raw["clobTokenIds"])
    assert m["clob_token_ids"] == token_ids
    assert page.tokens[:2] == [
        {"token_id": token_ids[0], "condition_id": m["condition_id"], "outcome": "Yes", "outcome_index": 0},
        {"token_id": token_ids[1], "condition_id": m["condition_id"], "outcome": "No", "outcome_index": 1},
    ]
    assert m["gamma_volume"] == raw["volumeNum"] == 12232699.615479222
    assert m["gamma_liquidity"] == raw["liquidityNum"] == 400500.66675
    assert (m["neg_risk"], m["neg_risk_source"]) == (True, "gamma")
    assert m["neg_risk_market_id"] == raw["negRiskMarketID"]
    assert m["question_id"] == raw["questionID"]
    assert (m["tick_size"], m["min_order_size"]) == (0.001, 5.0)
    assert (m["active"], m["closed"], m["accepting_orders"], m["enable_order_book"]) == (
        True,
        False,
        True,
        True,
    )
    assert m["end_date"] == datetime(2028, 11, 7, tzinfo=UTC)


def test_standalone_market(market: dict[str, Any]) -> None:
    m = normalize_market(market, None, NOW)
    assert m["outcomes"] == ["Up", "Down"] and m["outcome_prices"] == [0.505, 0.495]
    assert m["gamma_volume"] == 9.999997 and m["gamma_liquidity"] == 20328.3747
    assert (m["neg_risk"], m["neg_risk_source"]) == (False, "gamma")
    assert m["end_date"] == datetime(2026, 3, 12, 9, 25, tzinfo=UTC)


def test_numbers_preferred_over_strings(market: dict[str, Any]) -> None:
    # The recorded payload has both forms equal; make them differ to see which one wins.
    market["volumeNum"], market["liquidityNum"] = 12.5, 99.25
    m = normalize_market(market, None, NOW)
    assert (m["gamma_volume"], m["gamma_liquidity"]) == (12.5, 99.25)
    del market["volumeNum"], market["liquidityNum"]
    m = normalize_market(market, None, NOW)
    assert (m["gamma_volume"], m["gamma_liquidity"]) == (9.999997, 20328.3747)  # the numeric strings


def test_closed_market_closed_wins_over_active(closed_market: dict[str, Any]) -> None:
    assert closed_market["active"] is True and closed_market["closed"] is True
    m = normalize_market(closed_market, "1", NOW)
    assert (m["active"], m["closed"], m["accepting_orders"]) == (False, True, False)
    assert m["outcome_prices"] == [0.0, 1.0]
    assert m["gamma_liquidity"] is None  # absent on the closed market
    assert m["gamma_volume"] is None
    assert (m["neg_risk"], m["neg_risk_source"]) == (False, "gamma")


def test_accepting_orders_true_on_closed_market_is_not_trusted(closed_market: dict[str, Any]) -> None:
    closed_market["acceptingOrders"] = True  # seen live (reference §1.4)
    assert normalize_market(closed_market, "1", NOW)["accepting_orders"] is False


def test_clob_token_ids_as_array(market: dict[str, Any]) -> None:
    as_string = normalize_market(market, None, NOW)
    market["clobTokenIds"] = json.loads(market["clobTokenIds"])
    assert normalize_market(market, None, NOW) == as_string


def test_legacy_market_without_neg_risk(market: dict[str, Any]) -> None:
    del market["negRisk"]
    m = normalize_market(market, None, NOW)
    assert (m["neg_risk"], m["neg_risk_source"]) == (None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-11T18:41:17.827458Z", datetime(2025, 7, 11, 18, 41, 17, 827458, tzinfo=UTC)),
        ("2025-07-11T18:36:02.893Z", datetime(2025, 7, 11, 18, 36, 2, 893000, tzinfo=UTC)),
        ("2028-11-07T00:00:00Z", datetime(2028, 11, 7, tzinfo=UTC)),
        ("2025-03-06T22:20:20.05325Z", datetime(2025, 3, 6, 22, 20, 20, 53250, tzinfo=UTC)),
        ("2026-03-19 23:20:15+00", datetime(2026, 3, 19, 23, 20, 15, tzinfo=UTC)),
        ("2026-03-12", datetime(2026, 3, 12, tzinfo=UTC)),
        ("2026-03-12T01:00:00+02:00", datetime(2026, 3, 11, 23, tzinfo=UTC)),
        (None, None),
        ("", None),
    ],
)
def test_every_gamma_date_form(text: str | None, expected: datetime | None) -> None:
    parsed = parse_gamma_datetime(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


def test_fixture_date_fields_all_parse(
    events_page: list[dict[str, Any]], market: dict[str, Any], closed_market: dict[str, Any]
) -> None:
    raws = [events_page[0], *events_page[0]["markets"], market, closed_market]
    names = ("startDate", "endDate", "createdAt", "updatedAt", "closedTime", "endDateIso", "startDateIso")
    seen = [r[n] for r in raws for n in names if r.get(n)]
    assert any(" " in s for s in seen) and any(len(s) == 10 for s in seen)
    assert all(parse_gamma_datetime(s).tzinfo is UTC for s in seen)  # type: ignore[union-attr]


def _mangled(events_page: list[dict[str, Any]]) -> list[Any]:
    """The recorded page plus broken copies of its event and markets."""
    good = events_page[0]
    bad_market_event = copy.deepcopy(good)
    bad_market_event["id"] = "30830"
    m0, m1 = bad_market_event["markets"][:2]
    m0["outcomes"] = '["Yes", "No"'  # truncated JSON
    m1["outcomePrices"] = '["1.7", "-0.7"]'  # absurd prices
    extra = [copy.deepcopy(m1) for _ in range(4)]
    extra[0].update(conditionId=None, outcomePrices='["0.5", "0.5"]')
    extra[1].update(
        volumeNum="NaN", conditionId="0x" + "ab" * 32, id="9000001", outcomePrices='["0.5", "0.5"]'
    )
    extra[2].update(closed="yes", conditionId="0x" + "cd" * 32, id="9000002", outcomePrices='["0.5", "0.5"]')
    extra[3].update(
        clobTokenIds='["1"]', conditionId="0x" + "ef" * 32, id="9000003", outcomePrices='["0.5", "0.5"]'
    )
    valid = copy.deepcopy(good["markets"][1])
    valid.update(conditionId="0x" + "12" * 32, id="9000004")
    bad_market_event["markets"] += [*extra, valid]
    no_id = copy.deepcopy(good)
    del no_id["id"]
    markets_not_list = copy.deepcopy(good)
    markets_not_list.update(id="30831", markets={"0": "x"})
    return [good, bad_market_event, no_id, markets_not_list, "not an event"]


def test_malformed_items_are_rejected_and_the_rest_kept(events_page: list[dict[str, Any]]) -> None:
    page = normalize_events_page(_mangled(events_page), NOW)
    assert [e["event_id"] for e in page.events] == ["30829", "30830"]
    kept = {m["condition_id"] for m in page.markets}
    assert kept == {m["conditionId"] for m in events_page[0]["markets"]} | {"0x" + "12" * 32}
    reasons = [r.reason for r in page.rejected]
    assert len(reasons) == 9
    for fragment in (
        "outcomes is not valid JSON",
        "outcomePrices is absurd",
        "conditionId",
        "volumeNum is absurd",
        "closed is not a boolean",
        "clobTokenIds has 1 ids for 2 outcomes",
        "missing or bad id",
        "markets is not a list",
        "event is not an object",
    ):
        assert any(fragment in r for r in reasons), fragment
    # every token of every kept market, none of a rejected one
    assert {t["condition_id"] for t in page.tokens} == kept


def test_pending_deployment_market_is_skipped_not_rejected(events_page: list[dict[str, Any]]) -> None:
    raw = events_page[0]["markets"][0]
    del raw["conditionId"]
    raw["pendingDeployment"] = True
    page = normalize_events_page(events_page, NOW)
    assert page.skipped == 1 and page.rejected == [] and len(page.markets) == 1


def test_duplicate_event_on_a_page_is_kept_once(events_page: list[dict[str, Any]]) -> None:
    page = normalize_events_page(events_page * 2, NOW)
    assert len(page.events) == 1 and len(page.rejected) == 1


def test_tags_fixture() -> None:
    rows = [normalize_tag(t, NOW) for t in load("gamma_tags.json")]
    assert [(r["tag_id"], r["label"], r["slug"]) for r in rows][:2] == [
        ("101259", "Health and Human Services", "health-and-human-services"),
        ("101842", "Sweeden", "sweeden"),
    ]
    with pytest.raises(GammaPayloadError):
        normalize_tag({"label": "no id"}, NOW)


def test_sports_mapping_fixture_and_its_quirks() -> None:
    ids, rejected = sport_tag_ids(load("gamma_sports.json"))
    assert ids == {"1", "100149", "100639", "82", "306", "100350", "780"} and rejected == []
    ids, rejected = sport_tag_ids([{"sport": "nba", "tags": "1,745, 100639,"}, {"sport": "x"}])
    assert ids == {"1", "745", "100639"} and len(rejected) == 1


def test_event_missing_id_raises_alone(events_page: list[dict[str, Any]]) -> None:
    raw = events_page[0]
    raw["id"] = 30829  # an integer id is accepted as text
    assert normalize_event(raw, NOW)["event_id"] == "30829"
    raw["id"] = None
    with pytest.raises(GammaPayloadError):
        normalize_event(raw, NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
gamma_keys = st.sampled_from(
    [
        "id",
        "markets",
        "tags",
        "conditionId",
        "outcomes",
        "outcomePrices",
        "clobTokenIds",
        "volumeNum",
        "endDate",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(gamma_keys, json_values, max_size=8) | json_values, max_size=5))
def test_page_never_raises(events: list[Any]) -> None:
    page = normalize_events_page(events, NOW)
    assert len(page.events) + len([r for r in page.rejected if r.source == "gamma:event"]) <= len(events)
