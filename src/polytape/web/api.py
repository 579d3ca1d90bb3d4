"""The JSON API under ``/api/`` (read-only; every page is drawn from it).

=====================================  ====================================================
``GET /api/status``                    what ``polytape status --json`` says (+ runner, archive state)
``GET /api/markets``                   the tracked universe with prices, OI, volume
``GET /api/markets/{condition_id}``    the market; per token its book, best first
``GET /api/markets/{cid}/trades``      recent recorded trades (``large`` marked)
``GET /api/markets/{cid}/history``     price (mid, last trade) and open interest over ``hours``
``GET /api/signals``                   ``since``, ``after_id``, ``type``, ``market``, ``limit``
``GET /api/signals/stream``            the same filters, live, as Server-Sent Events
``GET /api/coverage``                  each tracked token's recorded time and gaps
=====================================  ====================================================
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from polytape.backfill import parse_since
from polytape.books import BookRegistry
from polytape.config import Settings
from polytape.errors import PolytapeError
from polytape.signals.format import describe
from polytape.signals.model import SIGNAL_TYPES
from polytape.store import Store
from polytape.store import web as wstore

SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings", Settings)
STORE_KEY: web.AppKey[Store] = web.AppKey("store", Store)
BOOKS_KEY: web.AppKey[Callable[[], BookRegistry | None]] = web.AppKey("books")
STREAMS_KEY: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("streams")

BOOK_DEPTH = 50
MAX_HOURS = 24 * 31
STREAM_POLL_SECONDS = 0.5
STREAM_PING_SECONDS = 15.0


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(value), status=status, content_type="application/json")


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=dumps({"error": message}), content_type="application/json")


async def read(request: web.Request, fn: Callable[[Any], Any]) -> Any:
    store = request.app[STORE_KEY]
    return await asyncio.to_thread(store.read, fn)


def _now() -> datetime:
    return datetime.now(UTC)


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number") from None
    return max(lo, min(hi, value))


def _hours(request: web.Request, default: float) -> float:
    raw = request.query.get("hours")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request("hours must be a number") from None
    if not 0 < value <= MAX_HOURS:
        raise bad_request(f"hours must be in (0, {MAX_HOURS}]")
    return value


def _filters(request: web.Request) -> tuple[list[str], list[str]]:
    types = [t for raw in request.query.getall("type", []) for t in raw.split(",") if t]
    unknown = [t for t in types if t not in SIGNAL_TYPES]
    if unknown:
        raise bad_request(f"unknown signal type(s): {', '.join(unknown)}")
    markets = [m for raw in request.query.getall("market", []) for m in raw.split(",") if m]
    return types, markets


def signal_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in ("id", "dedupe_key", "signal_type", "condition_id", "token_id", "score")}
    out["detected_at"] = row.get("detected_at")
    out["payload"] = row.get("payload")
    out["text"] = describe(row)
    return out


# --- handlers ------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    from polytape.web.overview import status_payload

    settings = request.app[SETTINGS_KEY]
    return json_response(await asyncio.to_thread(status_payload, request.app[STORE_KEY], settings))


async def markets(request: web.Request) -> web.Response:
    since = _now() - timedelta(hours=24)
    rows = await read(request, lambda c: wstore.market_list(c, since))
    registry = request.app[BOOKS_KEY]()
    if registry is not None:
        for row in rows:
            _live_top(row, registry)
    return json_response({"markets": rows, "count": len(rows)})


def _live_top(row: dict[str, Any], registry: BookRegistry) -> None:
    """Prefer the in-process live book (``polytape run --web``) for the YES token's top."""
    tokens = registry.tokens_of(row["condition_id"])
    book = registry.get(tokens[0]) if tokens else None
    if book is None or book.updated_at is None:
        return
    bid, ask = book.best_bid, book.best_ask
    row.update(best_bid=bid, best_ask=ask, book_updated_at=book.updated_at)
    row["spread"] = round(ask - bid, 6) if bid is not None and ask is not None else None


async def market(request: web.Request) -> web.Response:
    cid = request.match_info["condition_id"]
    detail = await read(request, lambda c: wstore.market_detail(c, cid))
    if detail is None:
        raise web.HTTPNotFound(text=dumps({"error": "no such market"}), content_type="application/json")
    registry = request.app[BOOKS_KEY]()
    for token in detail["tokens"]:
        book = registry.get(token["token_id"]) if registry is not None else None
        if book is not None and book.updated_at is not None:
            bids, asks = book.depth(BOOK_DEPTH)
            token.update(
                bids=[[p, s] for p, s in bids],
                asks=[[p, s] for p, s in asks],
                best_bid=book.best_bid,
                best_ask=book.best_ask,
                updated_at=book.updated_at,
                source="live",
            )
        else:
            token["bids"], token["asks"] = token["bids"][:BOOK_DEPTH], token["asks"][:BOOK_DEPTH]
    return json_response(detail)


async def market_trades(request: web.Request) -> web.Response:
    cid = request.match_info["condition_id"]
    limit = _int(request, "limit", 50, 1, 500)
    rows = await read(request, lambda c: wstore.recent_trades(c, cid, limit))
    large = request.app[SETTINGS_KEY].signal_large_trade_usd
    for r in rows:
        r["large"] = r["usd_value"] is not None and r["usd_value"] >= large
    return json_response({"trades": rows, "large_usd": large})


async def market_history(request: web.Request) -> web.Response:
    """Price (mid and last trade) and open interest over the last ``hours``."""
    from polytape.web.history import price_history

    cid = request.match_info["condition_id"]
    hours = _hours(request, 24.0)
    since = _now() - timedelta(hours=hours)
    out = await asyncio.to_thread(
        price_history, request.app[STORE_KEY], request.app[SETTINGS_KEY], cid, since
    )
    out["hours"] = hours
    return json_response(out)


async def signals(request: web.Request) -> web.Response:
    types, markets_ = _filters(request)
    limit = _int(request, "limit", 200, 1, 2000)
    after_id = _int(request, "after_id", -1, -1, 2**62)
    since: datetime | None = None
    if request.query.get("since"):
        try:
            since = parse_since(request.query["since"], _now())
        except (PolytapeError, ValueError) as exc:
            raise bad_request(f"since: {exc}") from None
    elif after_id < 0:
        since = _now() - timedelta(hours=24)
    after = after_id if after_id >= 0 else None

    def page(c: Any) -> list[dict[str, Any]]:
        return wstore.signals_page(
            c, since=since, after_id=after, types=types, markets_=markets_, limit=limit
        )

    rows = await read(request, page)
    return json_response({"signals": [signal_json(r) for r in rows]})


async def signals_stream(request: web.Request) -> web.StreamResponse:
    """New signals as Server-Sent Events (``event: signal``, ``id`` = the signal's id)."""
    types, markets_ = _filters(request)
    last = request.headers.get("Last-Event-ID") or request.query.get("after_id")
    after = int(last) if last and last.isdigit() else await read(request, wstore.max_signal_id)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    task = asyncio.current_task()
    streams = request.app[STREAMS_KEY]
    if task is not None:
        streams.add(task)
    loop = asyncio.get_running_loop()
    pinged = loop.time()
    try:
        await resp.write(f"retry: 2000\nevent: hello\ndata: {dumps({'after_id': after})}\n\n".encode())
        while True:
            rows = await read(request, functools.partial(_newer, after=after, types=types, markets_=markets_))
            for row in rows:
                after = int(row["id"])
                await resp.write(f"id: {after}\nevent: signal\ndata: {dumps(signal_json(row))}\n\n".encode())
            if loop.time() - pinged > STREAM_PING_SECONDS:
                await resp.write(b": ping\n\n")
                pinged = loop.time()
            await asyncio.sleep(STREAM_POLL_SECONDS)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if task is not None:
            streams.discard(task)
    return resp


def _newer(conn: Any, *, after: int, types: list[str], markets_: list[str]) -> list[dict[str, Any]]:
    return wstore.signals_page(conn, since=None, after_id=after, types=types, markets_=markets_, limit=200)


async def coverage(request: web.Request) -> web.Response:
    from polytape.web.history import coverage_json

    return json_response(
        await asyncio.to_thread(coverage_json, request.app[STORE_KEY], request.app[SETTINGS_KEY])
    )
