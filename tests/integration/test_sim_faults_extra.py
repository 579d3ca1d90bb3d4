"""The newer simulator faults over real sockets: bad fields, broken JSON, true hangs, WS delta faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from polytape.normalize.gamma import normalize_events_page
from polytape.sim import FaultProfile, SimServer
from polytape.sim.hashing import hash_of_payload
from polytape.sim.model import Market
from polytape.sim.ws import Connection

from .test_sim_ws import is_price_change, live_markets, recv, recv_until, subscribe, wait_for


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


# ---- HTTP -------------------------------------------------------------------------------


def valid_trade(row: Any, v2: bool) -> bool:
    """What a careful client demands of a trade row."""
    cid = row.get("condition_id" if v2 else "conditionId")
    price, size, ts = row.get("price"), row.get("size"), row.get("timestamp")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (price, size, ts))
    return isinstance(cid, str) and numbers and 0 <= price <= 1 and size > 0  # type: ignore[operator]


@pytest.mark.parametrize("v2", [False, True])
async def test_bad_fields_on_trades(sim: SimServer, http: httpx.AsyncClient, v2: bool) -> None:
    path = "/v2/trades" if v2 else "/trades"
    url = f"{sim.data_api_url}{path}"
    sim.inject(host="data", path=path, kind="bad_fields", items=3)
    faulted = (await http.get(url, params={"limit": 50})).json()
    clean = (await http.get(url, params={"limit": 50})).json()
    rows, want = (faulted["data"], clean["data"]) if v2 else (faulted, clean)
    assert len(rows) == len(want) == 50
    record = next(r for r in sim.request_log if r.path == path and r.fault == "bad_fields")
    assert record.status == 200 and len(record.corrupted) == 3
    assert [c.index for c in sim.corrupted] == record.corrupted
    rejected = [i for i, row in enumerate(rows) if not valid_trade(row, v2)]
    assert rejected == record.corrupted  # exactly the corrupted items are rejected
    for i, (got, expected) in enumerate(zip(rows, want, strict=True)):
        assert (got == expected) == (i not in record.corrupted)
    assert all(c.original == want[c.index] for c in sim.corrupted)  # the truth of those items


async def test_bad_fields_on_gamma_events(sim: SimServer, http: httpx.AsyncClient) -> None:
    url = f"{sim.gamma_url}/events/keyset"
    now = datetime.now(UTC)
    for how in ("id_missing", "markets_not_list", "market_condition_missing"):
        sim.corrupted.clear()
        sim.inject(host="gamma", path="/events/keyset", kind="bad_fields", items=2, corruption=how)
        events = (await http.get(url, params={"limit": 30})).json()["events"]
        clean = normalize_events_page((await http.get(url, params={"limit": 30})).json()["events"], now)
        page = normalize_events_page(events, now)
        bad = [c.original for c in sim.corrupted]
        assert len(bad) == 2 and all(c.how == how for c in sim.corrupted)
        assert len(page.rejected) == 2
        if how == "market_condition_missing":  # the event stays, its first market is rejected
            assert len(page.events) == len(clean.events)
            assert {r.raw.get("id") for r in page.rejected} == {e["markets"][0]["id"] for e in bad}
            assert len(page.markets) == len(clean.markets) - 2
        else:
            assert {e["event_id"] for e in clean.events} - {e["event_id"] for e in page.events} == {
                e["id"] for e in bad
            }


async def test_bad_fields_on_markets_oi_and_books(sim: SimServer, http: httpx.AsyncClient) -> None:
    sim.inject(
        host="gamma", path="/markets", kind="bad_fields", items=1, corruption="clob_token_ids_unparseable"
    )
    markets = (await http.get(f"{sim.gamma_url}/markets", params={"limit": 20})).json()
    (c,) = sim.corrupted
    assert markets[c.index]["clobTokenIds"] == '["1234567890", ' and c.field == "clobTokenIds"
    ok = [m["clobTokenIds"] for i, m in enumerate(markets) if i != c.index and "clobTokenIds" in m]
    assert all(isinstance(t, list) or json.loads(t) for t in ok)
    sim.inject(host="data", kind="bad_fields", items=1, corruption="value_string")
    oi = (await http.get(f"{sim.data_api_url}/oi")).json()
    assert [i for i, row in enumerate(oi) if not isinstance(row["value"], int | float)] == [
        sim.corrupted[-1].index
    ]
    live = live_markets(sim, 2)
    ids = [t for m in live for t in m.token_ids]
    sim.inject(host="clob", path="/books", kind="bad_fields", items=1, corruption="asset_missing")
    books = (await http.post(f"{sim.clob_url}/books", json=[{"token_id": t} for t in ids])).json()
    assert [i for i, b in enumerate(books) if "asset_id" not in b] == [sim.corrupted[-1].index]
    assert all(b == sim.world.books[b["asset_id"]] for b in books if "asset_id" in b)
    requests = (await http.get(f"{sim.gamma_url}/_sim/requests")).json()
    assert [c["how"] for c in requests["corrupted"]] == [
        "clob_token_ids_unparseable",
        "value_string",
        "asset_missing",
    ]


async def test_bad_fields_fires_only_on_list_endpoints(sim: SimServer, http: httpx.AsyncClient) -> None:
    sim.set_fault_profile(
        FaultProfile(seed=2, bad_fields_rate=1.0, bad_fields_items=2, hosts=frozenset({"clob"}))
    )
    token = live_markets(sim, 1)[0].token_ids[0]
    book = (await http.get(f"{sim.clob_url}/book", params={"token_id": token})).json()
    assert book == sim.world.books[token] and not sim.corrupted
    got = (await http.get(f"{sim.clob_url}/books", params={"token_ids": token})).json()
    assert len(sim.corrupted) == 1 and got[0] != book  # one book on the page: one item corrupted


async def test_malformed_json(sim: SimServer, http: httpx.AsyncClient) -> None:
    sim.inject(host="gamma", path="/events/keyset", kind="malformed_json")
    resp = await http.get(f"{sim.gamma_url}/events/keyset")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(resp.text)
    assert resp.text.startswith('{"events":[')
    assert (await http.get(f"{sim.gamma_url}/events/keyset")).json()["events"]
    sim.set_fault_profile(FaultProfile(malformed_json_rate=1.0, hosts=frozenset({"data"})))
    resp = await http.get(f"{sim.data_api_url}/oi")
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()


async def test_hang_never_answers(sim: SimServer, http: httpx.AsyncClient) -> None:
    url = f"{sim.data_api_url}/trades"
    sim.inject(host="data", path="/trades", kind="hang", delay=0.05)  # delay is ignored: a hang is a hang
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await http.get(url, timeout=0.6)
    assert time.monotonic() - started >= 0.6
    record = next(r for r in sim.request_log if r.fault == "hang")
    await wait_for(lambda: record.status == 0 and not sim.faults.injections)
    assert (await http.get(url)).status_code == 200  # the server is fine afterwards
    sim.set_fault_profile(FaultProfile(hang_rate=1.0, hosts=frozenset({"clob"})))
    pending = asyncio.create_task(http.get(f"{sim.clob_url}/book", params={"token_id": "1"}, timeout=30))
    await wait_for(lambda: sim.count("clob") == 1)
    started = time.monotonic()
    await sim.stop()  # a hanging request does not hold the server up; its client sees no answer
    with pytest.raises(httpx.TransportError):
        await pending
    assert time.monotonic() - started < 2


# ---- WebSocket ----------------------------------------------------------------------------


async def two_clients(sim: SimServer, market: Market) -> tuple[ClientConnection, ClientConnection, list[Any]]:
    """Two subscribers of the market's YES token; returns them and their initial books."""
    a = await subscribe(sim, [market.token_ids[0]])
    b = await subscribe(sim, [market.token_ids[0]])
    dumps = [json.loads(await recv(a))[0], json.loads(await recv(b))[0]]
    return a, b, dumps


def conns(sim: SimServer) -> list[Connection]:
    assert sim.hub is not None
    return sorted(sim.hub.connections, key=lambda c: c.id)


def apply(book: dict[str, Any], message: dict[str, Any]) -> list[str]:
    """Apply a ``price_change`` to a local copy of a WS book; returns the served hashes."""
    hashes = []
    for ch in message["price_changes"]:
        if ch["asset_id"] != book["asset_id"]:
            continue
        key = "bids" if ch["side"] == "BUY" else "asks"
        levels = {lvl["price"]: lvl["size"] for lvl in book[key]}
        if Decimal(ch["size"]) == 0:
            levels.pop(ch["price"], None)
        else:
            levels[ch["price"]] = ch["size"]
        ordered = sorted(levels.items(), key=lambda kv: Decimal(kv[0]), reverse=key == "asks")
        book[key] = [{"price": p, "size": s} for p, s in ordered]
        book["timestamp"] = message["timestamp"]
        hashes.append(ch["hash"])
    return hashes


async def changes(ws: ClientConnection, cid: str, n: int) -> list[dict[str, Any]]:
    """The next ``n`` ``price_change`` messages of market ``cid`` (other frames skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        frame = json.loads(await recv(ws))
        if is_price_change(frame, cid):
            got.append(frame)
    return got


def local_hash(book: dict[str, Any], market: Market) -> str:
    assert market.book is not None
    return hash_of_payload(book, min_order_size=market.book.min_order_size, neg_risk=market.neg_risk_clob)


async def test_skip_delta_misses_one_connection_only(sim: SimServer) -> None:
    market = next(m for m in live_markets(sim, 20) if not m.rfc3339_book_ts)
    a, b, (book_a, book_b) = await two_clients(sim, market)
    async with a, b:
        target, other = conns(sim)
        sim.inject(host="ws", kind="skip_delta", connection=target.id)
        sim.world.set_book(market.token_ids[0], [("0.21", "10")], [("0.5", "10")])
        sim.world.set_book(market.token_ids[0], [("0.22", "10")], [("0.5", "10")])
        truth = sim.world.books[market.token_ids[0]]
        got_b = await changes(b, market.condition_id, 2)
        got_a = await changes(a, market.condition_id, 1)
        await wait_for(target.queue.empty)
        assert got_a == [got_b[1]] and target.frames_sent == 2  # dump + 1: A missed a delta, B got both
        assert [k for k, _ in target.faults] == ["skip_delta"] and not other.faults
        assert target.faults[0][1] == got_b[0]
        for message in got_b:  # B stays in sync: every served hash is its local book's
            served = apply(book_b, message)
            assert served[-1] == local_hash(book_b, market)
        assert local_hash(book_b, market) == truth["hash"] and book_b["bids"] == truth["bids"]
        served = apply(book_a, got_a[0])  # A's book diverged: the next hash gives it away
        assert served[-1] == truth["hash"] != local_hash(book_a, market)


async def test_reorder_swaps_two_messages(sim: SimServer) -> None:
    market = live_markets(sim, 1)[0]
    a, b, _ = await two_clients(sim, market)
    async with a, b:
        target, _other = conns(sim)
        sim.inject(host="ws", kind="reorder", connection=target.id)
        for price in ("0.31", "0.32", "0.33"):
            sim.world.set_book(market.token_ids[0], [(price, "10")], [("0.6", "10")])
        in_order = [int(f["timestamp"]) for f in await changes(b, market.condition_id, 3)]
        swapped = [int(f["timestamp"]) for f in await changes(a, market.condition_id, 3)]
        assert in_order == sorted(in_order)
        assert swapped == [in_order[1], in_order[0], in_order[2]]
        assert [k for k, _ in target.faults] == ["reorder"]
        assert sim.world.books[market.token_ids[0]]["bids"][-1]["price"] == "0.33"


async def test_bad_hash_keeps_levels(sim: SimServer) -> None:
    market = next(m for m in live_markets(sim, 20) if not m.rfc3339_book_ts)
    a, b, _ = await two_clients(sim, market)
    async with a, b:
        target, other = conns(sim)
        sim.inject(host="ws", kind="bad_hash", connection=target.id)
        sim.world.set_book(market.token_ids[0], [("0.41", "10")], [("0.7", "10")])
        (good,) = await changes(b, market.condition_id, 1)
        (bad,) = await changes(a, market.condition_id, 1)
        strip = [{k: v for k, v in ch.items() if k != "hash"} for ch in good["price_changes"]]
        assert [{k: v for k, v in ch.items() if k != "hash"} for ch in bad["price_changes"]] == strip
        assert all(
            x["hash"] != y["hash"] for x, y in zip(good["price_changes"], bad["price_changes"], strict=True)
        )
        mine = [ch for ch in good["price_changes"] if ch["asset_id"] == market.token_ids[0]]
        assert mine[-1]["hash"] == sim.world.books[market.token_ids[0]]["hash"]  # the truth is intact
        assert [k for k, _ in target.faults] == ["bad_hash"] and not other.faults
        sim.inject(host="ws", kind="bad_hash", connection=other.id)
        sim.world.set_book(market.token_ids[0], [("0.41", "10")], [("0.7", "10")], emit="book")
        snap = (await recv_until(b, lambda f: isinstance(f, dict) and f.get("event_type") == "book"))[-1]
        truth = sim.world.books[market.token_ids[0]]
        assert snap["bids"] == truth["bids"] and snap["hash"] != truth["hash"]


async def test_ws_profile_rates_fire() -> None:
    profile = FaultProfile(seed=5, ws_skip_delta_rate=0.2, ws_reorder_rate=0.2, ws_bad_hash_rate=0.2)
    async with SimServer(seed=7, fault_profile=profile) as sim:
        market = live_markets(sim, 1)[0]
        async with await subscribe(sim, list(market.token_ids), initial_dump=False) as ws:
            await wait_for(
                lambda: bool(sim.hub and sim.hub.connections and sim.hub.connections[0].subscribed)
            )
            for i in range(40):
                sim.world.set_book(market.token_ids[0], [(f"0.{10 + i}", "5")], [("0.9", "5")])
            await wait_for(
                lambda: {k for _, _, k in sim.faults.served} >= {"skip_delta", "reorder", "bad_hash"}
            )
            await ws.send("PING")
            await recv_until(ws, lambda f: f == "PONG", 5)
