"""Simulated CLOB WebSocket market channel (``/ws/market``).

Protocol rules reproduced (reference.md §4): one initial
``{"assets_ids": [...], "type": "market"}`` (books dumped as one JSON array
frame unless ``initial_dump`` is false), later ``{"operation": "subscribe" |
"unsubscribe", "assets_ids": [...]}``; a second initial message gets the text
``INVALID OPERATION``; text ``PING`` → ``PONG``; a subscription naming an asset in
``Hub.refused_assets`` is closed at once with 1011 (a shard the venue keeps refusing); a ``PING`` (or anything
invalid) before a valid subscription, or no subscription within the timeout,
closes the socket with 1008 "invalid subscription payload"; ``NO NEW ASSETS``
is sent periodically when custom features are on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from polytape.sim import payloads
from polytape.sim.corrupt import has_hash, wrong_hash
from polytape.sim.faults import FaultInjector
from polytape.sim.httputil import dumps
from polytape.sim.model import (
    BookEvent,
    FeedEvent,
    PriceChangeEvent,
    ResolvedEvent,
    TickSizeEvent,
    TradeEvent,
)
from polytape.sim.world import World

INVALID_SUBSCRIPTION = b"invalid subscription payload"
REFUSED = b"subscription refused"


@dataclass
class WsSettings:
    """Timings of the WebSocket server (shorten them in tests)."""

    subscribe_timeout: float = 10.0
    no_new_assets_interval: float = 5.0
    reorder_wait: float = 2.0  # ``reorder``: how long a held message waits for the next one


@dataclass
class Outgoing:
    """A queued data frame; ``v1`` holds the legacy rendering of a ``price_change``."""

    payload: Any
    v1: list[dict[str, Any]] | None = None


@dataclass(eq=False)
class Connection:
    """One client socket and its subscription state."""

    ws: web.WebSocketResponse
    request: web.Request
    assets: set[str] = field(default_factory=set)
    subscribed: bool = False
    custom: bool = False
    frozen: bool = False
    queue: asyncio.Queue[Outgoing] = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    frames_sent: int = 0
    id: int = 0  # target of ``sim.inject(host="ws", connection=id)``
    faults: list[tuple[str, Any]] = field(default_factory=list)  # (kind, payload affected)

    async def send_text(self, text: str) -> None:
        """Send one text frame (serialised with the data sender)."""
        async with self.lock:
            if not self.ws.closed:
                await self.ws.send_str(text)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        transport = self.request.transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        elif transport is not None:
            transport.close()


class Hub:
    """Routes world feed events to subscribed connections and runs the protocol."""

    def __init__(self, world: World, faults: FaultInjector, settings: WsSettings) -> None:
        self.world = world
        self.faults = faults
        self.settings = settings
        self.connections: list[Connection] = []
        self.refused_assets: set[str] = set()  # subscriptions naming one of these are closed
        self.refusals = 0
        self._ids = itertools.count(1)
        world.add_listener(self.on_event)

    # ---- routing ------------------------------------------------------------------

    def _push(self, assets: set[str], item: Outgoing, *, custom_only: bool = False) -> None:
        for conn in self.connections:
            if conn.subscribed and conn.assets & assets and (conn.custom or not custom_only):
                conn.queue.put_nowait(item)

    def on_event(self, event: FeedEvent) -> None:
        """World listener: render the event once and queue it for subscribers."""
        world = self.world
        if not any(c.subscribed for c in self.connections):
            return
        if isinstance(event, PriceChangeEvent):
            market = world.markets[event.condition_id]
            item = Outgoing(payloads.ws_price_change(event), payloads.ws_price_change_v1(event))
            self._push(set(market.token_ids), item)
            if market.book is not None:
                for index, tid in enumerate(market.token_ids):
                    bba = payloads.ws_best_bid_ask(market, index, event.timestamp_ms)
                    self._push({tid}, Outgoing(bba), custom_only=True)
        elif isinstance(event, BookEvent):
            market = world.markets[event.condition_id]
            if market.book is not None:
                for index, tid in enumerate(market.token_ids):
                    self._push({tid}, Outgoing(payloads.ws_book(market, index)))
        elif isinstance(event, TradeEvent):
            self._push({event.fill.asset}, Outgoing(payloads.ws_last_trade_price(event)))
        elif isinstance(event, TickSizeEvent):
            market = world.markets[event.condition_id]
            for msg in payloads.ws_tick_size_change(event, market):
                self._push({msg["asset_id"]}, Outgoing(msg))
        elif isinstance(event, ResolvedEvent):
            market = world.markets[event.condition_id]
            event_obj = world.event_of(market)
            tags = {t.id: t.slug for t in world.tags}
            slugs = [tags[t] for t in event_obj.tag_ids if t in tags]
            msg = payloads.ws_market_resolved(market, event.timestamp_ms, slugs)
            self._push(set(market.token_ids), Outgoing(msg), custom_only=True)

    def _dump(self, conn: Connection, asset_ids: list[str]) -> None:
        books = []
        for tid in asset_ids:
            if tid in self.world.tokens:
                market, index = self.world.market_of_token(tid)
                if market.book is not None:
                    books.append(payloads.ws_book(market, index))
        if books:
            conn.queue.put_nowait(Outgoing(books))

    def connection_of(self, asset_id: str) -> Connection | None:
        """The open subscribed connection following ``asset_id`` (per-connection faults aim at its id)."""
        return next((c for c in self.connections if c.subscribed and asset_id in c.assets), None)

    # ---- sending ---------------------------------------------------------------------

    async def _sender(self, conn: Connection) -> None:
        while not conn.ws.closed:
            item = await conn.queue.get()
            if conn.frozen:
                continue
            kinds = frozenset({"freeze", "drop", "malformed", "unknown_event", "reorder"})
            if item.v1 is not None:
                kinds |= {"v1_price_change", "skip_delta"}
            if has_hash(item.payload):
                kinds |= {"bad_hash"}
            fault = self.faults.take_ws(kinds, conn.id)
            if fault in ("skip_delta", "reorder", "bad_hash"):
                conn.faults.append((fault, item.payload))
            if fault == "skip_delta":
                continue
            if fault == "reorder":
                await self._send_next_first(conn)
            if fault == "bad_hash":
                item = Outgoing(wrong_hash(item.payload))
            if fault == "freeze":
                conn.frozen = True
                continue
            if fault == "drop":
                conn.abort()
                return
            if fault == "malformed":
                await conn.send_text('{"event_type": "book", "market": "0x')
            elif fault == "unknown_event":
                await conn.send_text(dumps({"event_type": "sim_mystery", "timestamp": "0"}))
            frames = item.v1 if fault == "v1_price_change" and item.v1 is not None else [item.payload]
            for frame in frames:
                await conn.send_text(dumps(frame))
                conn.frames_sent += 1

    async def _send_next_first(self, conn: Connection) -> None:
        """``reorder``: send the next queued message (waiting a little for it) before this one."""
        with contextlib.suppress(TimeoutError):
            later = await asyncio.wait_for(conn.queue.get(), self.settings.reorder_wait)
            await conn.send_text(dumps(later.payload))
            conn.frames_sent += 1

    async def _no_new_assets(self, conn: Connection) -> None:
        interval = self.settings.no_new_assets_interval
        while interval > 0 and not conn.ws.closed:
            await asyncio.sleep(interval)
            if conn.custom:
                await conn.send_text("NO NEW ASSETS")

    # ---- receiving -------------------------------------------------------------------

    async def _reject(self, conn: Connection) -> None:
        await conn.ws.close(code=1008, message=INVALID_SUBSCRIPTION)

    async def _refused(self, conn: Connection, ids: list[str]) -> bool:
        """Close a connection whose subscription names a refused asset; True if it did."""
        if not self.refused_assets.intersection(ids):
            return False
        self.refusals += 1
        await conn.ws.close(code=1011, message=REFUSED)
        return True

    async def _on_text(self, conn: Connection, text: str) -> bool:
        """Handle one client text frame; ``False`` once the socket was closed."""
        if text == "PING":
            if not conn.subscribed:
                await self._reject(conn)
                return False
            await conn.send_text("PONG")
            return True
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        ids = msg.get("assets_ids") if isinstance(msg, dict) else None
        valid_ids = isinstance(ids, list) and all(isinstance(i, str) for i in ids)
        assert msg is None or not valid_ids or isinstance(ids, list)
        if not conn.subscribed:
            if isinstance(msg, dict) and str(msg.get("type", "")).lower() == "market" and valid_ids:
                assert isinstance(ids, list)
                if await self._refused(conn, ids):
                    return False
                conn.subscribed, conn.custom = True, bool(msg.get("custom_feature_enabled", False))
                conn.assets.update(ids)
                if msg.get("initial_dump", True) is not False:
                    self._dump(conn, ids)
                return True
            await self._reject(conn)
            return False
        operation = msg.get("operation") if isinstance(msg, dict) else None
        if operation in ("subscribe", "unsubscribe") and valid_ids and isinstance(msg, dict):
            assert isinstance(ids, list)
            if operation == "subscribe":
                if await self._refused(conn, ids):
                    return False
                new = [i for i in ids if i not in conn.assets]
                conn.assets.update(ids)
                conn.custom = conn.custom or bool(msg.get("custom_feature_enabled", False))
                if msg.get("initial_dump", True) is not False:
                    self._dump(conn, new)
            else:
                conn.assets.difference_update(ids)
            return True
        await conn.send_text("INVALID OPERATION")
        return True

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """aiohttp handler of ``GET /ws/market``."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Connection(ws, request, id=next(self._ids))
        self.connections.append(conn)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.subscribe_timeout
        tasks = [asyncio.create_task(self._sender(conn)), asyncio.create_task(self._no_new_assets(conn))]
        try:
            while not ws.closed:
                timeout = None if conn.subscribed else deadline - loop.time()
                if timeout is not None and timeout <= 0:
                    await self._reject(conn)
                    break
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    await self._reject(conn)
                    break
                if msg.type == WSMsgType.TEXT:
                    if not await self._on_text(conn, msg.data):
                        break
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            self.connections.remove(conn)
        return ws

    async def close_all(self) -> None:
        """Close every socket (server shutdown)."""
        for conn in list(self.connections):
            with contextlib.suppress(ConnectionError):
                await conn.ws.close(code=1001, message=b"server shutdown")
