"""The simulated REST hosts over real sockets: paging, limits, quirks, faults, control API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from polytape.sim import SimServer


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def test_events_keyset_pages_everything(sim: SimServer, http: httpx.AsyncClient) -> None:
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 7}
    while True:
        body = (await http.get(f"{sim.gamma_url}/events/keyset", params=params)).json()
        seen += [e["id"] for e in body["events"]]
        if "next_cursor" not in body:
            break
        params = {"limit": 7, "after_cursor": body["next_cursor"]}
    assert sorted(seen) == sorted(sim.world.events) and len(seen) == len(set(seen))
    first = (await http.get(f"{sim.gamma_url}/events/keyset", params={"limit": 7})).json()
    wrong = await http.get(
        f"{sim.gamma_url}/events/keyset", params={"limit": 7, "cursor": first["next_cursor"]}
    )
    assert wrong.json()["events"] == first["events"]  # `cursor=` is ignored, as for real
    for bad in ({"offset": 5}, {"limit": 0}, {"limit": 501}):
        assert (await http.get(f"{sim.gamma_url}/events/keyset", params=bad)).status_code == 422


async def test_legacy_events_and_markets(sim: SimServer, http: httpx.AsyncClient) -> None:
    params: dict[str, str | int] = {
        "active": "true",
        "closed": "false",
        "order": "id",
        "ascending": "false",
        "limit": 100,
        "offset": 0,
    }
    resp = await http.get(f"{sim.gamma_url}/events", params=params)
    assert resp.headers["Deprecation"] == "true" and resp.headers["Sunset"] == "Fri, 01 May 2026 00:00:00 GMT"
    assert resp.headers["Cache-Control"] == "public, max-age=300" and "keyset" in resp.headers["Warning"]
    ids = [int(e["id"]) for e in resp.json()]
    assert ids == sorted(ids, reverse=True) and all(not e["closed"] for e in resp.json())
    assert all(isinstance(e["volume"], float | int) for e in resp.json())
    closed = (await http.get(f"{sim.gamma_url}/events", params={"closed": "true"})).json()
    assert closed and all(e["closed"] and e["active"] for e in closed)
    bad = await http.get(f"{sim.gamma_url}/events", params={"order": "bogus"})
    assert bad.status_code == 422 and "order fields are not valid" in bad.text
    assert (await http.get(f"{sim.gamma_url}/events", params={"order": "volume_24hr"})).status_code == 200
    capped = await http.get(f"{sim.gamma_url}/markets", params={"limit": 10_000, "closed": "true"})
    assert capped.headers["Deprecation"] == "true" and all(m["closed"] for m in capped.json())
    default = (await http.get(f"{sim.gamma_url}/markets")).json()
    assert default and not any(m["closed"] for m in default) and "events" in default[0]
    tags = (await http.get(f"{sim.gamma_url}/tags")).json()
    sports = (await http.get(f"{sim.gamma_url}/sports")).json()
    assert len(tags) == len(sim.world.tags) and {"sport", "tags"} <= set(sports[0])


async def test_trades_v1_limits_and_filters(sim: SimServer, http: httpx.AsyncClient) -> None:
    url = f"{sim.data_api_url}/trades"
    rows = (await http.get(url, params={"limit": 10_000})).json()
    assert len(rows) == 500
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)
    over = await http.get(url, params={"offset": 3000})
    assert over.status_code == 400
    assert over.json() == {"error": "max historical activity offset of 3000 exceeded"}
    big = (await http.get(url, params={"filterType": "CASH", "filterAmount": 10_000, "limit": 500})).json()
    assert big and all(r["size"] * r["price"] >= 10_000 for r in big)
    assert (await http.get(url, params={"filterType": "CASH"})).status_code == 400
    cids = list({r["conditionId"] for r in rows})[:2]
    some = (await http.get(url, params={"market": ",".join(cids), "limit": 500})).json()
    assert some and {r["conditionId"] for r in some} <= set(cids)
    both = (await http.get(url, params={"market": cids[0], "takerOnly": "false", "limit": 500})).json()
    taker = (await http.get(url, params={"market": cids[0], "limit": 500})).json()

    # Both lists are capped at 500, so compare contents, not lengths: maker fills
    # appear only when takerOnly=false.
    def fill(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["transactionHash"], r["asset"], r["proxyWallet"], r["side"], r["size"], r["price"])

    assert {fill(r) for r in both} - {fill(r) for r in taker}
    end = int(time.time()) - 86_400
    window = (await http.get(url, params={"start": end - 3600, "end": end, "limit": 500})).json()
    assert window and all(end - 3600 <= r["timestamp"] <= end for r in window)


async def test_offset_paging_over_a_moving_tape_duplicates(sim: SimServer, http: httpx.AsyncClient) -> None:
    url = f"{sim.data_api_url}/trades"
    page1 = (await http.get(url, params={"limit": 100, "offset": 0})).json()
    market = sim.world.markets[page1[0]["conditionId"]]
    for _ in range(5):
        sim.world.plant_trade(market.condition_id, 0, "BUY", 10, 0.5)
    page2 = (await http.get(url, params={"limit": 100, "offset": 100})).json()

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["transactionHash"], r["asset"], r["proxyWallet"], r["side"], r["size"], r["price"])

    assert {key(r) for r in page1} & {key(r) for r in page2}


async def test_trades_v2_cursor(sim: SimServer, http: httpx.AsyncClient) -> None:
    url = f"{sim.data_api_url}/v2/trades"
    assert (await http.get(url, params={"offset": 0})).status_code == 400
    body = (await http.get(url, params={"limit": 300})).json()
    seen = [(r["transaction_hash"], r["proxy_wallet"], r["size"], r["price"]) for r in body["data"]]
    assert set(body["data"][0]) >= {"proxy_wallet", "token_id", "condition_id", "transaction_hash"}
    await sim.step(5)  # new trades arrive; the cursor is not disturbed
    for _ in range(3):
        assert body["pagination"]["has_more"] is True
        body = (await http.get(url, params={"cursor": body["pagination"]["next_cursor"]})).json()
        assert len(body["data"]) == 300
        seen += [(r["transaction_hash"], r["proxy_wallet"], r["size"], r["price"]) for r in body["data"]]
    assert len(seen) == len(set(seen))


async def test_open_interest(sim: SimServer, http: httpx.AsyncClient) -> None:
    world = sim.world
    unservable = next(m.condition_id for m in world.markets.values() if not m.oi_servable)
    good = [c for c, m in world.markets.items() if m.oi_servable][:3]
    rows = (await http.get(f"{sim.data_api_url}/oi", params={"market": ",".join([*good, unservable])})).json()
    assert {r["market"] for r in rows} == set(good)
    world.set_open_interest(good[0], 42.5)
    rows = (await http.get(f"{sim.data_api_url}/oi", params={"market": good[0]})).json()
    assert rows == [{"market": good[0], "value": 42.5}]


async def test_clob_books(sim: SimServer, http: httpx.AsyncClient) -> None:
    world = sim.world
    live = next(m for m in world.markets.values() if m.book is not None)
    nobook = next(m for m in world.markets.values() if not m.enable_order_book)
    closed = next(m for m in world.markets.values() if m.closed)
    book = (await http.get(f"{sim.clob_url}/book", params={"token_id": live.token_ids[1]})).json()
    assert book == world.books[live.token_ids[1]]
    for tid in (nobook.token_ids[0], closed.token_ids[0], "123"):
        resp = await http.get(f"{sim.clob_url}/book", params={"token_id": tid})
        assert resp.status_code == 404
        assert resp.json() == {"error": "No orderbook exists for the requested token id"}
    resp = await http.get(f"{sim.clob_url}/book", params={"token_id": "0xnope"})
    assert resp.status_code == 400 and resp.json() == {"error": "Invalid token id"}
    books = (await http.post(f"{sim.clob_url}/books", json=[{"token_id": t} for t in live.token_ids])).json()
    assert {b["asset_id"] for b in books} == set(live.token_ids)
    too_many = await http.post(f"{sim.clob_url}/books", json=[{"token_id": "1"}] * 501)
    assert too_many.status_code == 400 and too_many.json() == {"error": "Invalid payload"}
    got = (await http.get(f"{sim.clob_url}/books", params={"token_ids": ",".join(live.token_ids)})).json()
    assert len(got) == 2


async def test_http_faults(sim: SimServer, http: httpx.AsyncClient) -> None:
    url = f"{sim.data_api_url}/trades"
    sim.inject(host="data", path="/trades", kind="429", retry_after=2)
    resp = await http.get(url)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    sim.inject(host="data", kind="html403")
    resp = await http.get(url)
    assert resp.status_code == 403 and resp.headers["content-type"].startswith("text/html")
    assert "Cloudflare" in resp.text
    sim.inject(host="gamma", kind="html1015")
    resp = await http.get(f"{sim.gamma_url}/events/keyset")
    assert resp.status_code == 429 and "1015" in resp.text
    sim.inject(host="clob", kind="503", count=3)
    codes = [(await http.get(f"{sim.clob_url}/book", params={"token_id": "1"})).status_code for _ in range(4)]
    assert codes == [503, 503, 503, 404]
    sim.inject(host="data", kind="reset")
    with pytest.raises(httpx.TransportError):
        await http.get(url)
    sim.inject(host="data", kind="slow", delay=0.3)
    started = time.monotonic()
    assert (await http.get(url)).status_code == 200 and time.monotonic() - started >= 0.3
    sim.inject(host="data", kind="hang", delay=5)
    with pytest.raises(httpx.ReadTimeout):
        await http.get(url, timeout=0.3)
    assert sim.count("data", "/trades") == 5 and sim.count("clob") == 4
    sim.clear_faults()
    assert (await http.get(url)).status_code == 200


async def test_control_api(sim: SimServer, http: httpx.AsyncClient) -> None:
    before = len(sim.world.trades)
    step = (await http.post(f"{sim.gamma_url}/_sim/step", params={"n": 10})).json()
    assert step["step_count"] == 10 and len(sim.world.trades) == before + step["new_fills"]
    truth = (await http.get(f"{sim.gamma_url}/_sim/truth")).json()
    assert {"events", "markets", "tokens", "trades", "open_interest", "books"} <= set(truth)
    assert len(truth["trades"]) == len(sim.world.trades)
    resp = await http.post(f"{sim.gamma_url}/_sim/faults", json={"host": "data", "kind": "500", "count": 1})
    assert resp.json()["ok"]
    assert (await http.get(f"{sim.data_api_url}/oi")).status_code == 500
    await http.post(f"{sim.gamma_url}/_sim/faults", json={"profile": {"error_rate": 1.0, "hosts": ["clob"]}})
    assert (await http.get(f"{sim.clob_url}/book", params={"token_id": "1"})).status_code >= 500
    await http.delete(f"{sim.gamma_url}/_sim/faults")
    assert (await http.get(f"{sim.clob_url}/book", params={"token_id": "1"})).status_code == 404
    bad = await http.post(f"{sim.gamma_url}/_sim/faults", json={"kind": "nope"})
    assert bad.status_code == 400


async def test_live_mode_grows_the_tape() -> None:
    async with SimServer(seed=3, live=True, live_interval=0.01) as sim:
        grew = asyncio.Event()
        sim.world.add_listener(lambda event: grew.set())
        await asyncio.wait_for(grew.wait(), 5)
        assert sim.world.step_count > 0
