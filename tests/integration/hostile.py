"""A small hostile HTTP server on 127.0.0.1: the answers a malicious or broken API gives.

Each route answers one way, chosen by the test through ``HostileServer.mode``; any
path (``/trades``, ``/oi``, ``/books``, ``/events/keyset``, …) gets the same answer, so
one server stands in for the Data API, the CLOB or Gamma.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

JUNK_ITEM = b'{"a":1,"b":[1,2,3],"c":"x"}'
MB = 1_000_000


def junk_items(target_bytes: int) -> int:
    """How many junk items make a body of about ``target_bytes``."""
    return max(1, target_bytes // (len(JUNK_ITEM) + 1))


class HostileServer:
    """Serves the answer named by ``mode`` on every path, GET or POST."""

    def __init__(self) -> None:
        self.mode = "junk"
        self.junk_bytes = 49 * MB
        self.trade: dict[str, object] = {}
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.can_read_body:
            await request.read()
        if self.mode == "junk":
            return await self._junk(request)
        if self.mode == "trickle":
            return await self._trickle(request)
        if self.mode == "bad_utf8":
            return web.Response(body=b'[{"proxyWallet":"\xff\xfe\xfd"}]', content_type="application/json")
        if self.mode == "deep":
            return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
        if self.mode == "html":
            page = (
                b"<!doctype html><html><head><title>Maintenance</title></head><body>back soon</body></html>"
            )
            return web.Response(body=page, content_type="text/html")
        if self.mode == "trade":
            return web.json_response([self.trade])
        raise AssertionError(f"unknown mode {self.mode}")

    async def _junk(self, request: web.Request) -> web.StreamResponse:
        """A JSON array of junk items, streamed in 1 MB chunks (nothing large held here)."""
        n = junk_items(self.junk_bytes)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk_items = MB // (len(JUNK_ITEM) + 1)
        await response.write(b"[")
        sent = 0
        try:
            while sent < n:
                k = min(chunk_items, n - sent)
                body = b",".join([JUNK_ITEM] * k)
                await response.write((b"," if sent else b"") + body)
                sent += k
            await response.write(b"]")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client gave up reading, as it should past its cap
        return response

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then one byte every 0.2 s, never finishing."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b"[")
            while True:
                await asyncio.sleep(0.2)
                await response.write(b" ")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


@asynccontextmanager
async def hostile_server() -> AsyncIterator[HostileServer]:
    server = HostileServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
