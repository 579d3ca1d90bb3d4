"""Simulated CLOB REST: ``GET /book``, ``GET /books``, ``POST /books``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from polytape.sim import payloads
from polytape.sim.httputil import WORLD, BadParam, error, json_response, q_list
from polytape.sim.world import World

BOOKS_MAX = 500
NO_BOOK = "No orderbook exists for the requested token id"


def _book(world: World, token_id: str) -> dict[str, Any] | None:
    if token_id not in world.tokens:
        return None
    market, index = world.market_of_token(token_id)
    if market.book is None:
        return None
    return payloads.clob_book(market, index)


async def book(request: web.Request) -> web.Response:
    """``GET /book?token_id=``: 400 for a malformed id, 404 for no book."""
    token_id = request.query.get("token_id", "")
    if not token_id.isdigit():
        raise BadParam(400, "Invalid token id")
    found = _book(request.app[WORLD], token_id)
    if found is None:
        return error(404, NO_BOOK)
    return json_response(found)


def _books(world: World, token_ids: list[str]) -> web.Response:
    if not token_ids or len(token_ids) > BOOKS_MAX or not all(t.isdigit() for t in token_ids):
        raise BadParam(400, "Invalid payload")
    found = [_book(world, t) for t in token_ids]
    return json_response([b for b in found if b is not None])


async def books_get(request: web.Request) -> web.Response:
    """``GET /books?token_ids=a,b`` (≤ 500); tokens without a book are left out."""
    return _books(request.app[WORLD], q_list(request, "token_ids") or [])


async def books_post(request: web.Request) -> web.Response:
    """``POST /books`` with ``[{"token_id": ...}]`` (≤ 500 items, else 400 Invalid payload)."""
    try:
        body = json.loads(await request.text())
    except ValueError:
        raise BadParam(400, "Invalid payload") from None
    if not isinstance(body, list) or not all(isinstance(i, dict) and "token_id" in i for i in body):
        raise BadParam(400, "Invalid payload")
    return _books(request.app[WORLD], [str(i["token_id"]) for i in body])


def add_routes(app: web.Application) -> None:
    """Register the CLOB REST routes."""
    app.router.add_get("/book", book)
    app.router.add_get("/books", books_get)
    app.router.add_post("/books", books_post)
