"""The simulated market channel over a real socket: protocol rules, feed, faults."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from polytape.sim import SimServer, WsSettings
from polytape.sim.hashing import hash_of_payload
from polytape.sim.model import Market
from tests.support.waiting import wait_until


async def recv(ws: ClientConnection, timeout: float = 3.0) -> str:
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, str)
    return msg


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = 3.0) -> list[Any]:
    """Frames (parsed when JSON) up to and including the first one matching ``pred``."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        text = await recv(ws, max(0.01, deadline - time.monotonic()))
        try:
            item: Any = json.loads(text)
        except ValueError:
            item = text
        got.append(item)
        if pred(item):
            return got


wait_for = functools.partial(wait_until, timeout=3.0, every=0.005)


def live_markets(sim: SimServer, n: int) -> list[Market]:
    return [m for m in sim.world.markets.values() if m.book is not None][:n]


def is_price_change(item: Any, cid: str) -> bool:
    return isinstance(item, dict) and item.get("event_type") == "price_change" and item.get("market") == cid


async def subscribe(sim: SimServer, assets: list[str], **extra: Any) -> ClientConnection:
    ws = await websockets.connect(sim.clob_ws_url)
    await ws.send(json.dumps({"assets_ids": assets, "type": "market", **extra}))
    return ws


async def test_initial_dump_and_ping(sim: SimServer) -> None:
    market = live_markets(sim, 1)[0]
    async with await subscribe(sim, list(market.token_ids)) as ws:
        dump = json.loads(await recv(ws))
        assert isinstance(dump, list) and [b["asset_id"] for b in dump] == market.token_ids
        for book in dump:
            assert book["event_type"] == "book"
            assert hash_of_payload(book, neg_risk=market.neg_risk_clob) == book["hash"]
        await ws.send("PING")
        assert await recv(ws) == "PONG"
        await ws.send(json.dumps({"assets_ids": market.token_ids, "type": "market"}))
        assert await recv(ws) == "INVALID OPERATION"


async def test_ping_before_subscribe_closes_1008(sim: SimServer) -> None:
    async with websockets.connect(sim.clob_ws_url) as ws:
        await ws.send("PING")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert info.value.rcvd.reason == "invalid subscription payload"


async def test_no_subscribe_in_time_closes_1008() -> None:
    async with SimServer(seed=2, ws_settings=WsSettings(subscribe_timeout=0.2)) as sim:
        ws = await websockets.connect(sim.clob_ws_url)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_price_changes_carry_both_tokens_and_verify(sim: SimServer) -> None:
    market = live_markets(sim, 1)[0]
    async with await subscribe(sim, [market.token_ids[0]]) as ws:
        (book,) = json.loads(await recv(ws))
        sim.world.set_book(market.token_ids[0], [("0.2", "100"), ("0.25", "10")], [("0.4", "5")])
        frames = await recv_until(ws, lambda f: is_price_change(f, market.condition_id))
        change = frames[-1]
        assert {c["asset_id"] for c in change["price_changes"]} == set(market.token_ids)
        last = [c for c in change["price_changes"] if c["asset_id"] == market.token_ids[0]][-1]
        rest = sim.world.books[market.token_ids[0]]
        if not market.rfc3339_book_ts:
            assert rest["hash"] == last["hash"]
        assert last["best_bid"] == "0.25" and last["best_ask"] == "0.4"
        assert book["asset_id"] == market.token_ids[0]


async def test_trades_send_last_trade_price_then_book(sim: SimServer) -> None:
    markets = live_markets(sim, 40)
    assets = [t for m in markets for t in m.token_ids]
    async with await subscribe(sim, assets, initial_dump=False) as ws:
        await wait_for(lambda: bool(sim.hub and sim.hub.connections and sim.hub.connections[0].subscribed))
        for _ in range(50):
            if await sim.step(5):
                break
        frames = await recv_until(
            ws, lambda f: isinstance(f, dict) and f.get("event_type") == "last_trade_price"
        )
        trade = frames[-1]
        assert trade["asset_id"] in assets and trade["timestamp"].isdigit()
        after = await recv_until(
            ws,
            lambda f: (
                isinstance(f, dict) and f.get("event_type") == "book" and f["market"] == trade["market"]
            ),
        )
        assert after[-1]["last_trade_price"] or after[-1]["asset_id"] != trade["asset_id"]


async def test_operations_subscribe_unsubscribe(sim: SimServer) -> None:
    a, b = live_markets(sim, 2)
    async with await subscribe(sim, [a.token_ids[0]], initial_dump=False) as ws:
        await ws.send(json.dumps({"operation": "subscribe", "assets_ids": [b.token_ids[0]]}))
        dump = json.loads(await recv(ws))
        assert [x["asset_id"] for x in dump] == [b.token_ids[0]]
        await ws.send(json.dumps({"operation": "unsubscribe", "assets_ids": [a.token_ids[0]]}))
        await ws.send("PING")
        assert await recv(ws) == "PONG"
        sim.world.set_book(a.token_ids[0], [("0.1", "1")], [("0.9", "1")])
        sim.world.set_book(b.token_ids[0], [("0.1", "1")], [("0.9", "1")])
        frames = await recv_until(ws, lambda f: is_price_change(f, b.condition_id))
        assert not any(is_price_change(f, a.condition_id) for f in frames)
        await ws.send(json.dumps({"operation": "bogus"}))
        assert await recv(ws) == "INVALID OPERATION"


async def test_tick_size_change(sim: SimServer) -> None:
    market = next(m for m in live_markets(sim, 80) if m.tick_size == "0.01")
    async with await subscribe(sim, [market.token_ids[1]], initial_dump=False) as ws:
        await wait_for(lambda: bool(sim.hub and sim.hub.connections and sim.hub.connections[0].subscribed))
        sim.world.set_book(market.token_ids[0], [("0.97", "10")], [("0.98", "10")])
        frames = await recv_until(
            ws, lambda f: isinstance(f, dict) and f.get("event_type") == "tick_size_change"
        )
        assert frames[-1]["asset_id"] == market.token_ids[1]
        assert (frames[-1]["old_tick_size"], frames[-1]["new_tick_size"]) == ("0.01", "0.001")


async def test_no_new_assets_with_custom_features() -> None:
    settings = WsSettings(no_new_assets_interval=0.05)
    async with SimServer(seed=2, ws_settings=settings) as sim:
        market = live_markets(sim, 1)[0]
        async with await subscribe(sim, [market.token_ids[0]], custom_feature_enabled=True) as ws:
            frames = await recv_until(ws, lambda f: f == "NO NEW ASSETS")
            assert isinstance(frames[0], list)
            sim.world.close_market(market.condition_id)
            await recv_until(ws, lambda f: isinstance(f, dict) and f.get("event_type") == "market_resolved")


async def test_freeze_keeps_pong_but_stops_data(sim: SimServer) -> None:
    market = live_markets(sim, 1)[0]
    async with await subscribe(sim, list(market.token_ids), initial_dump=False) as ws:
        await wait_for(lambda: bool(sim.hub and sim.hub.connections and sim.hub.connections[0].subscribed))
        conn = sim.hub.connections[0] if sim.hub else None
        assert conn is not None
        sim.inject(host="ws", kind="freeze")
        sim.world.set_book(market.token_ids[0], [("0.1", "1")], [("0.9", "1")])
        await wait_for(lambda: conn.frozen and conn.queue.empty())
        sim.world.set_book(market.token_ids[0], [("0.2", "1")], [("0.8", "1")])
        await wait_for(conn.queue.empty)
        await ws.send("PING")
        assert await recv(ws) == "PONG"
        assert conn.frames_sent == 0


async def test_drop_malformed_unknown_and_v1(sim: SimServer) -> None:
    market = live_markets(sim, 1)[0]
    async with await subscribe(sim, [market.token_ids[0]], initial_dump=False) as ws:
        await wait_for(lambda: bool(sim.hub and sim.hub.connections and sim.hub.connections[0].subscribed))
        sim.inject(host="ws", kind="malformed")
        sim.inject(host="ws", kind="unknown_event")
        sim.inject(host="ws", kind="v1_price_change")
        for price in ("0.1", "0.11", "0.12"):
            sim.world.set_book(market.token_ids[0], [(price, "1")], [("0.9", "1")])
        texts = [await recv(ws) for _ in range(6)]
        with pytest.raises(ValueError):
            json.loads(texts[0])
        parsed = [json.loads(t) for t in texts[1:]]
        assert parsed[0]["event_type"] == "price_change"
        assert parsed[1]["event_type"] == "sim_mystery" and "price_changes" in parsed[2]
        assert "changes" in parsed[3] and "changes" in parsed[4]  # v1: one message per asset
        sim.inject(host="ws", kind="drop")
        sim.world.set_book(market.token_ids[0], [("0.3", "1")], [("0.9", "1")])
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is None  # no close frame: a dropped connection
