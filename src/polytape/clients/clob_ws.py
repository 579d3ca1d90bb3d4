"""CLOB market channel: one WebSocket that follows a set of assets, forever.

Protocol (reference.md §4.1): one initial ``{"assets_ids": [...], "type": "market"}``
with at most ``subscribe_chunk`` ids, the rest as ``{"operation": "subscribe", ...}``
frames; later changes as ``operation`` frames on the same socket; the text ``PING``
every ``ping_interval`` seconds, only once subscribed. A silence watchdog opens a new
socket when no real payload (``PONG`` and ``NO NEW ASSETS`` do not count) arrived for
``silence_timeout`` seconds (lessons.md #1). Any close, error or silence leads to a
reconnect after a capped, fully jittered exponential backoff, forever.

I/O only: every received frame goes, as text, to the ``on_frame`` callback; parsing
and book keeping are the feed's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
import websockets
from websockets.asyncio.client import ClientConnection, connect

log = structlog.get_logger("polytape.clients.clob_ws")

HEARTBEAT_TEXT = frozenset({"PONG", "NO NEW ASSETS"})
MAX_FRAME_BYTES = 64 * 1024 * 1024  # an initial dump of hundreds of books is large
BACKOFF_BASE = 0.25

FrameCallback = Callable[[str, float], None]  # (frame text, monotonic receive time)
ConnectCallback = Callable[["MarketChannel", bool], None]  # (channel, is_reconnect)
BeforeConnect = Callable[[], Awaitable[None]]  # e.g. the feed's connect ramp


class SilenceTimeout(Exception):
    """No real payload for longer than the watchdog allows."""


class MarketChannel:
    """One market-channel socket; ``await run()`` until cancelled."""

    def __init__(
        self,
        url: str,
        assets: Iterable[str],
        *,
        on_frame: FrameCallback,
        on_connect: ConnectCallback | None = None,
        ping_interval: float = 10.0,
        silence_timeout: float = 60.0,
        reconnect_max: float = 60.0,
        subscribe_chunk: int = 100,
        name: str = "ws",
        rng: random.Random | None = None,
        before_connect: BeforeConnect | None = None,
    ) -> None:
        self.url = url
        self.assets: set[str] = set(assets)
        self.name = name
        self.on_frame = on_frame
        self.on_connect = on_connect
        self.ping_interval = ping_interval
        self.silence_timeout = silence_timeout
        self.reconnect_max = reconnect_max
        self.subscribe_chunk = subscribe_chunk
        self.before_connect = before_connect
        self.connected = False
        self.connections = 0
        self.reconnects = 0
        self.dropped_silent = False  # the previous socket was given up as silent (not closed)
        self.failures = 0  # sessions in a row that delivered no payload
        self.frames = 0
        self.last_payload_at = 0.0  # monotonic
        self.last_error = ""
        self._rng = rng or random.Random()
        self._ws: ClientConnection | None = None
        self._subscribed = False
        self._send_lock = asyncio.Lock()

    # ---- subscriptions ----------------------------------------------------------------

    async def subscribe(self, asset_ids: Iterable[str]) -> None:
        """Follow more assets (sent at once when subscribed, else with the next connect)."""
        new = list(dict.fromkeys(asset_ids))
        self.assets.update(new)
        await self._operation("subscribe", new)

    async def unsubscribe(self, asset_ids: Iterable[str]) -> None:
        """Stop following assets."""
        gone = [a for a in dict.fromkeys(asset_ids) if a in self.assets]
        self.assets.difference_update(gone)
        await self._operation("unsubscribe", gone)

    async def resubscribe(self, asset_ids: Iterable[str]) -> None:
        """Unsubscribe and subscribe again, so the server sends fresh snapshots."""
        ids = [a for a in dict.fromkeys(asset_ids) if a in self.assets]
        await self._operation("unsubscribe", ids)
        await self._operation("subscribe", ids)

    async def _operation(self, operation: str, ids: list[str]) -> None:
        if not ids:
            return
        async with self._send_lock:
            ws = self._ws
            if ws is None or not self._subscribed:
                return  # the next (re)connect subscribes to ``self.assets``
            for start in range(0, len(ids), self.subscribe_chunk):
                frame = {"assets_ids": ids[start : start + self.subscribe_chunk], "operation": operation}
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps(frame))

    # ---- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, read; reconnect with backoff on any failure; until cancelled."""
        while True:
            got_data = False
            try:
                if self.before_connect is not None:
                    await self.before_connect()
                got_data = await self._session()
                reason = "closed by server"
                self.dropped_silent = False
            except SilenceTimeout as exc:
                reason = str(exc)
                self.dropped_silent = True
            except (websockets.WebSocketException, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self.dropped_silent = False
            finally:
                self.connected = False
                self._subscribed = False
                self._ws = None
            self.last_error = reason
            self.failures = 0 if got_data else self.failures + 1
            delay = self._rng.uniform(
                0, min(self.reconnect_max, BACKOFF_BASE * 2.0 ** min(self.failures, 30))
            )
            log.warning("ws reconnecting", channel=self.name, reason=reason, delay=round(delay, 2))
            self.reconnects += 1
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One socket's life; True when it delivered at least one real payload."""
        async with connect(
            self.url, ping_interval=None, max_size=MAX_FRAME_BYTES, open_timeout=10, close_timeout=1
        ) as ws:
            self._ws = ws
            self.connected = True
            await self._initial_subscribe(ws)
            self.connections += 1
            if self.on_connect is not None:
                self.on_connect(self, self.connections > 1)
            pinger = asyncio.create_task(self._ping(ws))
            try:
                return await self._read(ws)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger

    async def _initial_subscribe(self, ws: ClientConnection) -> None:
        async with self._send_lock:
            ids = sorted(self.assets)
            first: dict[str, Any] = {"assets_ids": ids[: self.subscribe_chunk], "type": "market"}
            await ws.send(json.dumps(first))
            for start in range(self.subscribe_chunk, len(ids), self.subscribe_chunk):
                more = {"assets_ids": ids[start : start + self.subscribe_chunk], "operation": "subscribe"}
                await ws.send(json.dumps(more))
            self._subscribed = True
        self.last_payload_at = time.monotonic()

    async def _ping(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            async with self._send_lock:
                await ws.send("PING")

    async def _read(self, ws: ClientConnection) -> bool:
        got_data = False
        while True:
            left = self.silence_timeout - (time.monotonic() - self.last_payload_at)
            if left <= 0:
                raise SilenceTimeout(f"no payload for {self.silence_timeout:g}s")
            try:
                async with asyncio.timeout(min(left, 1.0)):
                    frame = await ws.recv()
            except TimeoutError:
                continue
            except websockets.ConnectionClosedOK:
                return got_data
            now = time.monotonic()
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            self.frames += 1
            if text not in HEARTBEAT_TEXT:
                self.last_payload_at = now
                got_data = True
            try:
                self.on_frame(text, now)
            except Exception:  # a bug in a consumer must not kill the feed
                log.exception("frame handler failed", channel=self.name)
        raise SilenceTimeout("kicked by the feed")
