"""``SimServer``: the four simulated hosts on loopback, faults, request log, control API.

Gamma, Data API, CLOB REST and the CLOB WebSocket each listen on their own
port, like the real separate hosts. The Gamma port also serves the control
endpoints ``GET /_sim/truth``, ``POST /_sim/step?n=``, ``POST|DELETE /_sim/faults``
and ``GET /_sim/requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from polytape.sim import clob_api, corrupt, data_api, gamma_api
from polytape.sim.corrupt import Corruption
from polytape.sim.faults import FaultInjector, FaultProfile, Injection, cloudflare_page
from polytape.sim.httputil import WORLD, BadParam, error, json_response
from polytape.sim.payloads import HOSTS
from polytape.sim.world import World
from polytape.sim.ws import Hub, WsSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HOST_NAMES = ("gamma", "data", "clob", "ws")


@dataclass
class RequestRecord:
    """One request seen by a simulated host (control endpoints excluded)."""

    host: str
    method: str
    path: str
    query: dict[str, str]
    at: float
    status: int = 0
    fault: str | None = None
    corrupted: list[int] = field(default_factory=list)  # bad_fields: indexes of the bad items


class SimServer:
    """The Polymarket simulator over real sockets; ``async with SimServer() as sim``."""

    def __init__(
        self,
        world: World | None = None,
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        live: bool = False,
        live_interval: float = 0.5,
        fault_profile: FaultProfile | None = None,
        ws_settings: WsSettings | None = None,
    ) -> None:
        self.world = world if world is not None else World(seed)
        self.host = host
        self.ports = {name: int((ports or {}).get(name, 0)) for name in HOST_NAMES}
        self.live = live
        self.live_interval = live_interval
        self.faults = FaultInjector(fault_profile)
        self.ws_settings = ws_settings or WsSettings()
        self.request_log: list[RequestRecord] = []
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self.corrupted: list[Corruption] = []  # every item served with bad fields
        self._corrupt_rng = random.Random(self.world.seed)
        self._stopping = asyncio.Event()
        self.hub: Hub | None = None
        self._runners: list[web.AppRunner] = []
        self._live_task: asyncio.Task[None] | None = None

    # ---- URLs ---------------------------------------------------------------------

    def _base(self, name: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.ports[name]}"

    @property
    def gamma_url(self) -> str:
        """Base URL of the simulated Gamma API."""
        return self._base("gamma")

    @property
    def data_api_url(self) -> str:
        """Base URL of the simulated Data API."""
        return self._base("data")

    @property
    def clob_url(self) -> str:
        """Base URL of the simulated CLOB REST API."""
        return self._base("clob")

    @property
    def clob_ws_url(self) -> str:
        """URL of the simulated market channel."""
        return self._base("ws", "ws") + "/ws/market"

    # ---- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Bind the four ports and start serving (and stepping, when ``live``)."""
        self._stopping.clear()
        self.hub = Hub(self.world, self.faults, self.ws_settings)
        apps = {name: self._make_app(name) for name in HOST_NAMES}
        gamma_api.add_routes(apps["gamma"])
        data_api.add_routes(apps["data"])
        clob_api.add_routes(apps["clob"])
        apps["ws"].router.add_get("/ws/market", self.hub.handle)
        self._add_control_routes(apps["gamma"])
        try:
            for name, app in apps.items():
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
                await runner.setup()
                self._runners.append(runner)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.ports[name]))
                sock.listen(128)
                sock.setblocking(False)
                self.ports[name] = sock.getsockname()[1]
                await web.SockSite(runner, sock).start()
        except BaseException:
            await self.stop()
            raise
        if self.live:
            self._live_task = asyncio.create_task(self._live_loop())

    async def stop(self) -> None:
        """Stop stepping, close every socket and free the ports."""
        self._stopping.set()
        if self._live_task is not None:
            self._live_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._live_task
            self._live_task = None
        if self.hub is not None:
            await self.hub.close_all()
            self.world.remove_listener(self.hub.on_event)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _live_loop(self) -> None:
        while True:
            await asyncio.sleep(self.live_interval)
            self.world.step()

    async def step(self, n: int = 1) -> int:
        """Advance the world ``n`` ticks now (messages go to subscribers); returns new fills."""
        added = self.world.step(n=n)
        await asyncio.sleep(0)
        return added

    # ---- faults and request log ---------------------------------------------------------

    def inject(
        self,
        host: str | None = None,
        path: str | None = None,
        kind: str = "500",
        count: int = 1,
        retry_after: float = 1.0,
        delay: float | None = None,
        *,
        items: int = 2,
        corruption: str | None = None,
        connection: int | None = None,
        after: int = 0,
    ) -> Injection:
        """Serve fault ``kind`` to the next ``count`` matching requests (or WS frames).

        ``items``/``corruption`` shape ``bad_fields``; ``connection`` aims a WS fault at
        one ``Connection.id`` (see ``faults`` for every kind). ``after`` lets that many
        matching requests pass first: ``after=2`` faults the third page.
        """
        return self.faults.inject(
            kind,
            host=host,
            path=path,
            count=count,
            retry_after=retry_after,
            delay=delay,
            items=items,
            corruption=corruption,
            connection=connection,
            after=after,
        )

    def clear_faults(self) -> None:
        """Remove every injection and the random fault profile."""
        self.faults.clear()

    def set_fault_profile(self, profile: FaultProfile | None) -> None:
        """Switch the random fault profile (``None`` for none)."""
        self.faults.set_profile(profile)

    def count(self, host: str, path: str | None = None) -> int:
        """Requests seen by ``host`` (on ``path`` only, when given)."""
        return sum(n for (h, p), n in self.request_counts.items() if h == host and path in (None, p))

    # ---- apps ----------------------------------------------------------------------------

    def _make_app(self, name: str) -> web.Application:
        app = web.Application(middlewares=[self._middleware(name)])
        app[WORLD] = self.world
        return app

    def _middleware(self, host: str) -> Any:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith("/_sim/"):
                return await handler(request)
            record = RequestRecord(host, request.method, request.path, dict(request.query), time.time())
            self.request_log.append(record)
            self.request_counts[(host, request.path)] += 1
            fault = self.faults.take_http(host, request.path)
            response: web.StreamResponse | None = None
            if fault is not None:
                record.fault = fault.kind
                response = await self._serve_fault(request, host, fault)
            if response is None:
                try:
                    response = await handler(request)
                except BadParam as exc:
                    response = error(exc.status, exc.message)
                if fault is not None:
                    response = self._corrupt(response, record, fault)
            record.status = response.status
            return response

        return middleware

    async def _serve_fault(
        self, request: web.Request, host: str, fault: Injection
    ) -> web.StreamResponse | None:
        """The fault's response, or ``None`` to serve normally (after any delay)."""
        kind = fault.kind
        if kind in ("malformed_json", "bad_fields"):
            return None  # applied to the real answer by ``_corrupt``
        if kind == "hang":
            await self._hang(request)
        if kind == "slow":
            await asyncio.sleep(fault.delay if fault.delay is not None else 0.5)
            return None
        if kind == "reset":
            transport = request.transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            raise asyncio.CancelledError
        if kind == "429":
            seconds = fault.retry_after
            text = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
            body = {"error": "Too Many Requests", "retry_after_seconds": max(1, round(seconds))}
            return json_response(body, 429, headers={"Retry-After": text})
        if kind.startswith("html"):
            status, html = cloudflare_page(
                kind, HOSTS[host], format(abs(hash(request.path)) % 16**16, "016x")
            )
            return web.Response(
                text=html, status=status, content_type="text/html", headers={"Server": "cloudflare"}
            )
        if kind == "502":
            html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
            return web.Response(
                text=html + "</center><hr><center>cloudflare</center></body></html>",
                status=502,
                content_type="text/html",
            )
        messages = {"500": "Internal Server Error", "503": "Service Unavailable"}
        return error(int(kind), messages.get(kind, "error"))

    async def _hang(self, request: web.Request) -> None:
        """Never answer: wait until the client gives up or the server stops, then drop the socket."""
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.05)
        transport = request.transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        raise asyncio.CancelledError

    def _corrupt(
        self, response: web.StreamResponse, record: RequestRecord, fault: Injection
    ) -> web.StreamResponse:
        """Apply a ``malformed_json`` or ``bad_fields`` fault to the real answer."""
        if fault.kind == "malformed_json":
            return corrupt.malformed_json(response)
        if fault.kind != "bad_fields":
            return response
        response, done = corrupt.bad_fields(
            response,
            host=record.host,
            path=record.path,
            items=fault.items,
            how=fault.corruption,
            rng=self._corrupt_rng,
        )
        record.corrupted = [c.index for c in done]
        self.corrupted.extend(done)
        return response

    def _add_control_routes(self, app: web.Application) -> None:
        async def truth(request: web.Request) -> web.Response:
            return json_response(self.world.truth())

        async def step(request: web.Request) -> web.Response:
            n = int(request.query.get("n", "1"))
            added = await self.step(n)
            return json_response({"step_count": self.world.step_count, "new_fills": added})

        async def faults_post(request: web.Request) -> web.Response:
            try:
                body = await request.json()
                if "profile" in body:
                    profile = body["profile"]
                    if isinstance(profile, str):
                        self.set_fault_profile(FaultProfile.named(profile, int(body.get("seed", 0))))
                    else:
                        self.set_fault_profile(FaultProfile.from_dict(profile) if profile else None)
                    return json_response({"ok": True})
                injection = self.inject(
                    host=body.get("host"),
                    path=body.get("path"),
                    kind=str(body.get("kind", "500")),
                    count=int(body.get("count", 1)),
                    retry_after=float(body.get("retry_after", 1.0)),
                    delay=body.get("delay"),
                    items=int(body.get("items", 2)),
                    corruption=body.get("corruption"),
                    connection=body.get("connection"),
                )
            except (ValueError, TypeError, AttributeError) as exc:
                return error(400, str(exc))
            return json_response({"ok": True, "kind": injection.kind, "count": injection.count})

        async def faults_delete(request: web.Request) -> web.Response:
            self.clear_faults()
            return json_response({"ok": True})

        async def requests(request: web.Request) -> web.Response:
            counts = [{"host": h, "path": p, "count": n} for (h, p), n in sorted(self.request_counts.items())]
            corrupted = [
                {"host": c.host, "path": c.path, "index": c.index, "field": c.field, "how": c.how}
                for c in self.corrupted
            ]
            return json_response(
                {"counts": counts, "faults_served": self.faults.served, "corrupted": corrupted}
            )

        app.router.add_get("/_sim/truth", truth)
        app.router.add_post("/_sim/step", step)
        app.router.add_post("/_sim/faults", faults_post)
        app.router.add_delete("/_sim/faults", faults_delete)
        app.router.add_get("/_sim/requests", requests)


async def run_simulator(
    host: str,
    seed: int,
    ports: dict[str, int],
    live: bool,
    live_interval: float,
    fault_profile: FaultProfile | None,
    *,
    world: World | None = None,
) -> None:
    """Serve the simulator until cancelled, printing ``POLYTAPE_*_URL=`` lines to export."""
    sim = SimServer(
        world,
        seed=seed,
        host=host,
        ports=ports,
        live=live,
        live_interval=live_interval,
        fault_profile=fault_profile,
    )
    await sim.start()
    try:
        for name, url in (
            ("POLYTAPE_GAMMA_URL", sim.gamma_url),
            ("POLYTAPE_DATA_API_URL", sim.data_api_url),
            ("POLYTAPE_CLOB_URL", sim.clob_url),
            ("POLYTAPE_CLOB_WS_URL", sim.clob_ws_url),
        ):
            print(f"{name}={url}")
        sys.stdout.flush()
        await asyncio.Event().wait()
    finally:
        await sim.stop()
