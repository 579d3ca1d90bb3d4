"""The web dashboard and its JSON API (aiohttp), read-only over the database.

``polytape web`` serves it on its own (:func:`serve`); ``polytape run --web`` serves it
beside the jobs (:class:`WebServer`), where the market page shows the live in-process
books. It binds ``POLYTAPE_WEB_HOST`` (127.0.0.1) on ``POLYTAPE_WEB_PORT`` (8765). Only
GET routes exist: nothing the dashboard does writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from polytape.books import BookRegistry
from polytape.config import Settings
from polytape.errors import ConfigError
from polytape.store import Store
from polytape.web import api, pages

log = structlog.get_logger("polytape.web")

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if not resp.prepared:
        resp.headers.update(SECURITY_HEADERS)
    return resp


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound()
    try:
        body = resources.files("polytape.web").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(body=body, content_type=STATIC_TYPES[suffix], headers={"Cache-Control": "no-cache"})


async def _favicon(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/static/favicon.svg")


def create_app(
    store: Store, settings: Settings, books: Callable[[], BookRegistry | None] | None = None
) -> web.Application:
    """The dashboard over ``store`` (and the live ``books`` of this process, when given)."""
    app = web.Application(middlewares=[_headers])
    app[api.STORE_KEY] = store
    app[api.SETTINGS_KEY] = settings
    app[api.BOOKS_KEY] = books or (lambda: None)
    streams: set[asyncio.Task[Any]] = set()
    app[api.STREAMS_KEY] = streams
    r = app.router
    r.add_get("/", pages.overview)
    r.add_get("/markets", pages.markets)
    r.add_get("/markets/{condition_id}", pages.market)
    r.add_get("/signals", pages.signals)
    r.add_get("/coverage", pages.coverage)
    r.add_get("/static/{name}", _static)
    r.add_get("/favicon.ico", _favicon)
    r.add_get("/api/status", api.status)
    r.add_get("/api/markets", api.markets)
    r.add_get("/api/markets/{condition_id}", api.market)
    r.add_get("/api/markets/{condition_id}/trades", api.market_trades)
    r.add_get("/api/markets/{condition_id}/history", api.market_history)
    r.add_get("/api/signals", api.signals)
    r.add_get("/api/signals/stream", api.signals_stream)
    r.add_get("/api/coverage", api.coverage)
    app.on_shutdown.append(_close_streams)
    return app


async def _close_streams(app: web.Application) -> None:
    streams: set[asyncio.Task[Any]] = app[api.STREAMS_KEY]
    for task in list(streams):
        task.cancel()


class WebServer:
    """The dashboard served from the current event loop until :meth:`aclose`."""

    def __init__(
        self, store: Store, settings: Settings, books: Callable[[], BookRegistry | None] | None = None
    ) -> None:
        self.settings = settings
        self.app = create_app(store, settings, books)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Bind and serve; returns the base URL (ConfigError when the port is taken)."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        host, port = self.settings.web_host, self.settings.web_port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot serve the dashboard on {host}:{port} ({exc.strerror or exc}); "
                "set POLYTAPE_WEB_PORT or POLYTAPE_WEB_HOST"
            ) from None
        self._runner = runner
        bound: Any = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        log.info("dashboard serving", url=self.url)
        return self.url

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def serve(settings: Settings) -> int:
    """``polytape web``: serve until SIGINT/SIGTERM; returns the exit code."""
    from polytape.app import open_store

    store = open_store(settings, migrate=False)
    try:
        if not store.is_current():
            raise ConfigError(
                "the database is not at the newest schema; "
                "run 'polytape db upgrade' (or 'polytape run') first"
            )
        return asyncio.run(_serve(store, settings))
    finally:
        store.close()


async def _serve(store: Store, settings: Settings) -> int:
    server = WebServer(store, settings)
    url = await server.start()
    print(f"polytape dashboard on {url}  (Ctrl-C to stop)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.aclose()
    return 0
