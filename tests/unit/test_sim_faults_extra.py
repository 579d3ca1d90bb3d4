"""The newer simulator faults without sockets: validation, profiles, corrupters, bad hashes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aiohttp import web

from polytape.sim import FaultProfile, World
from polytape.sim import payloads as pl
from polytape.sim.corrupt import (
    BAD_FIELDS_PATHS,
    CORRUPTIONS,
    bad_fields,
    has_hash,
    malformed_json,
    wrong_hash,
)
from polytape.sim.faults import FaultInjector
from polytape.sim.httputil import dumps, json_response
from polytape.sim.model import PriceChangeEvent

NEW_WS = ("skip_delta", "reorder", "bad_hash")


@pytest.fixture(scope="module")
def world() -> World:
    return World(5, n_events=8, history_days=0.2, now=1_790_000_000.0)


def sample_page(world: World, path: str) -> Any:
    """A real-looking answer of ``path`` built from the world's payloads."""
    market = next(m for m in world.markets.values() if m.book is not None and m.token_ids)
    event = world.event_of(market)
    tags = {t.id: t for t in world.tags}
    fills = world.trades[-5:]
    rows: dict[str, Any] = {
        "/trades": [pl.data_trade(f, world.markets[f.condition_id], event) for f in fills],
        "/v2/trades": {"data": [pl.data_v2_trade(f, world.markets[f.condition_id], event) for f in fills]},
        "/oi": [{"market": cid, "value": 12.5} for cid in list(world.markets)[:4]],
        "/books": [pl.clob_book(market, i) for i in (0, 1)],
        "/events": [
            pl.gamma_event(e, [world.markets[c] for c in e.market_ids], tags) for e in world.events.values()
        ],
        "/markets": [pl.gamma_market(m, world.event_of(m), standalone=True) for m in world.markets.values()],
    }
    rows["/events/keyset"] = {"events": rows["/events"], "next_cursor": "x"}
    rows["/markets/keyset"] = {"markets": rows["/markets"]}
    return rows[path]


def items_of(path: str, data: Any) -> list[Any]:
    key = BAD_FIELDS_PATHS[path]
    out = data[key] if key else data
    assert isinstance(out, list)
    return out


def get(item: Any, dotted: str) -> Any:
    """Follow ``markets[0].clobTokenIds``-style paths; ``KeyError`` when absent."""
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        item = item[name]
        if index:
            item = item[int(index.rstrip("]"))]
    return item


def test_new_kinds_validate() -> None:
    injector = FaultInjector()
    for kind in (*NEW_WS, "malformed_json", "bad_fields", "hang"):
        injector.inject(kind)
    with pytest.raises(ValueError, match="list endpoints"):
        injector.inject("bad_fields", host="clob", path="/book")
    with pytest.raises(ValueError, match="unknown corruption"):
        injector.inject("bad_fields", corruption="nope")
    with pytest.raises(ValueError, match="WebSocket"):
        injector.inject("500", connection=3)
    with pytest.raises(ValueError, match="does not apply"):
        injector.inject("skip_delta", host="data")


def test_bad_fields_only_consumed_by_list_endpoints() -> None:
    injector = FaultInjector()
    injector.inject("bad_fields", host="clob", items=3, corruption="asset_missing")
    assert injector.take_http("clob", "/book") is None
    hit = injector.take_http("clob", "/books")
    assert hit is not None and (hit.kind, hit.items, hit.corruption) == ("bad_fields", 3, "asset_missing")
    assert injector.served == [("clob", "/books", "bad_fields")]


def test_ws_injection_targets_one_connection() -> None:
    injector = FaultInjector()
    injector.inject("skip_delta", host="ws", connection=2, count=2)
    kinds = frozenset({"skip_delta", "drop"})
    assert injector.take_ws(kinds, 1) is None
    assert injector.take_ws(frozenset({"drop"}), 2) is None  # not eligible for this frame
    assert [injector.take_ws(kinds, 2) for _ in range(3)] == ["skip_delta", "skip_delta", None]


def test_profile_rates_fire_new_kinds_deterministically() -> None:
    def run() -> list[str | None]:
        profile = FaultProfile(seed=4, hang_rate=0.1, malformed_json_rate=0.1, bad_fields_rate=0.2)
        injector = FaultInjector(profile)
        return [(f.kind if (f := injector.take_http("data", "/trades")) else None) for _ in range(200)]

    first = run()
    assert first == run()
    assert {"hang", "malformed_json", "bad_fields"} <= set(first)
    injector = FaultInjector(FaultProfile(bad_fields_rate=1.0, bad_fields_items=4))
    assert injector.take_http("clob", "/book") is None  # not a list endpoint
    hit = injector.take_http("gamma", "/events/keyset")
    assert hit is not None and hit.kind == "bad_fields" and hit.items == 4
    ws = FaultInjector(
        FaultProfile(seed=1, ws_skip_delta_rate=0.3, ws_reorder_rate=0.3, ws_bad_hash_rate=0.3)
    )
    seen = {ws.take_ws(frozenset({"skip_delta", "reorder", "bad_hash", "drop"})) for _ in range(100)}
    assert set(NEW_WS) <= seen and "drop" not in seen


def test_hostile_has_every_new_rate() -> None:
    hostile = FaultProfile.named("hostile")
    for name in (
        "hang_rate",
        "malformed_json_rate",
        "bad_fields_rate",
        "ws_skip_delta_rate",
        "ws_reorder_rate",
        "ws_bad_hash_rate",
    ):
        assert 0 < getattr(hostile, name) <= 0.02, name
    assert FaultProfile.from_dict({"bad_fields_rate": 0.5, "bad_fields_items": 3}).bad_fields_items == 3


@pytest.mark.parametrize(
    ("path", "how"), [(path, how) for path, table in CORRUPTIONS.items() for how in sorted(table)]
)
def test_each_corruption_breaks_only_its_items(world: World, path: str, how: str) -> None:
    data = sample_page(world, path)
    clean = json.loads(dumps(data))
    response = json_response(data, headers={"Deprecation": "true"})
    out, done = bad_fields(response, host="h", path=path, items=2, how=how, rng=random.Random(1))
    assert isinstance(out, web.Response) and isinstance(out.body, bytes)
    assert out.status == 200 and out.headers["Deprecation"] == "true"
    served = items_of(path, json.loads(out.body))
    rows = items_of(path, clean)
    assert len(done) == 2 and len(served) == len(rows)
    bad = {c.index for c in done}
    for index, (got, want) in enumerate(zip(served, rows, strict=True)):
        assert (got != want) == (index in bad)
    for c in done:
        assert (c.how, c.path, c.host) == (how, path, "h")
        assert c.original == rows[c.index]
        assert_broken(how, served[c.index], c.field)


def assert_broken(how: str, item: Any, field: str) -> None:
    """The item's ``field`` shows the named corruption."""
    if field == "markets":  # a nested-market corruption on an event without markets
        assert not isinstance(get(item, field), list)
        return
    if how.endswith("_missing"):
        with pytest.raises(KeyError):
            get(item, field)
        return
    value = get(item, field)
    if how.endswith("_string"):
        with pytest.raises(ValueError):
            float(value)
    elif how == "price_negative":
        assert float(value) < 0
    elif how.endswith("_above_one"):
        assert float(value) > 1
    elif how.endswith("_not_list"):
        assert not isinstance(value, list)
    elif how.endswith("_unparseable"):
        with pytest.raises(ValueError):
            json.loads(value)
    else:
        assert how == "outcomes_wrong_type" and not isinstance(value, str | list)


def test_bad_fields_leaves_errors_and_empty_pages_alone() -> None:
    rng = random.Random(0)
    for response in (json_response([]), json_response({"error": "x"}, 400), json_response({"events": []})):
        out, done = bad_fields(response, host="gamma", path="/events/keyset", items=2, how=None, rng=rng)
        assert out is response and done == []
    out, done = bad_fields(
        json_response([{"market": "0x1", "value": 1}]), host="d", path="/oi", items=5, how=None, rng=rng
    )
    assert len(done) == 1 and done[0].how in CORRUPTIONS["/oi"]


def test_malformed_json_is_a_truncated_200() -> None:
    response = json_response([{"a": 1}, {"b": 2}], 200, headers={"X-Keep": "1"})
    out = malformed_json(response)
    assert isinstance(out, web.Response) and isinstance(out.body, bytes)
    assert out.status == 200 and out.content_type == "application/json" and out.headers["X-Keep"] == "1"
    assert b'[{"a":1},{"b":2}]'.startswith(out.body)
    with pytest.raises(ValueError):
        json.loads(out.body)
    for status in (404, 500):
        broken = malformed_json(json_response({"error": "x"}, status))
        assert broken.status == 200


def test_wrong_hash_keeps_levels(world: World) -> None:
    market = next(m for m in world.markets.values() if m.book is not None)
    book = pl.ws_book(market, 0)
    bad = wrong_hash(book)
    assert has_hash(book) and bad["hash"] != book["hash"] and len(bad["hash"]) == 40
    assert {k: v for k, v in bad.items() if k != "hash"} == {k: v for k, v in book.items() if k != "hash"}
    assert book == pl.ws_book(market, 0)  # the shared payload is not touched
    events: list[Any] = []
    world.add_listener(events.append)
    world.set_book(market.token_ids[0], [("0.3", "5")], [("0.6", "5")])
    world.remove_listener(events.append)
    change = pl.ws_price_change(next(e for e in events if isinstance(e, PriceChangeEvent)))
    bad_change = wrong_hash(change)
    for good, broken in zip(change["price_changes"], bad_change["price_changes"], strict=True):
        assert good["hash"] != broken["hash"]
        assert {k: v for k, v in good.items() if k != "hash"} == {
            k: v for k, v in broken.items() if k != "hash"
        }
    assert not has_hash({"event_type": "last_trade_price"}) and not has_hash([book])
