"""Simulated Data API: ``/trades`` (offset, capped), ``/v2/trades`` (cursor), ``/oi``."""

from __future__ import annotations

from itertools import islice
from typing import Any

from aiohttp import web

from polytape.sim import payloads
from polytape.sim.httputil import (
    WORLD,
    BadParam,
    decode_cursor,
    encode_cursor,
    is_condition_id,
    json_response,
    q_bool,
    q_float,
    q_int,
    q_list,
)
from polytape.sim.model import Fill
from polytape.sim.world import World

TRADES_MAX_LIMIT = 500
TRADES_MAX_OFFSET = 3000
V2_MAX_IDS = 20


def _filters(request: web.Request, *, v2: bool) -> dict[str, Any]:
    """Shared filters of v1 and v2 (names differ: camelCase vs snake_case)."""
    if v2:
        markets = q_list(request, "condition", "condition_id", "conditionId")
        events = q_list(request, "event_id")
        taker_only = q_bool(request, "taker_only", True)
        filter_type = request.query.get("filter_type", "TOKENS")
        amount = q_float(request, "filter_amount")
        amount = 0.01 if amount is None else amount
    else:
        markets = q_list(request, "market")
        events = q_list(request, "eventId")
        taker_only = q_bool(request, "takerOnly", True)
        filter_type = request.query.get("filterType", "")
        amount = q_float(request, "filterAmount")
        if bool(filter_type) != (amount is not None):
            raise BadParam(400, "filterType and filterAmount must be provided together")
    if markets is not None and events is not None:
        raise BadParam(400, "market and eventId are mutually exclusive")
    for cid in markets or []:
        if not is_condition_id(cid):
            raise BadParam(400, f"invalid condition id: {cid}")
    if v2 and ((markets and len(markets) > V2_MAX_IDS) or (events and len(events) > V2_MAX_IDS)):
        raise BadParam(400, f"at most {V2_MAX_IDS} ids per request")
    if filter_type and filter_type not in ("CASH", "TOKENS"):
        raise BadParam(400, f"invalid filterType: {filter_type}")
    side = request.query.get("side")
    if side is not None and side not in ("BUY", "SELL"):
        raise BadParam(400, f"invalid side: {side}")
    user = request.query.get("user")
    return {
        "markets": set(markets) if markets is not None else None,
        "event_ids": set(events) if events is not None else None,
        "user": user.lower() if user else None,
        "side": side,
        "taker_only": bool(taker_only),
        "min_cash": amount if filter_type == "CASH" else None,
        "min_tokens": amount if filter_type == "TOKENS" else None,
        "start": q_int(request, "start", None),
        "end": q_int(request, "end", None),
    }


def _row(world: World, fill: Fill, *, v2: bool) -> dict[str, Any]:
    market = world.markets[fill.condition_id]
    event = world.event_of(market)
    return payloads.data_v2_trade(fill, market, event) if v2 else payloads.data_trade(fill, market, event)


async def trades(request: web.Request) -> web.Response:
    """``GET /trades``: newest first; limit clamped to 500; offset ≥ 3000 is a 400."""
    world = request.app[WORLD]
    limit = q_int(request, "limit", 100)
    offset = q_int(request, "offset", 0)
    assert limit is not None and offset is not None
    if limit < 0 or offset < 0:
        raise BadParam(400, "limit and offset must be non-negative")
    if offset >= TRADES_MAX_OFFSET:
        raise BadParam(400, f"max historical activity offset of {TRADES_MAX_OFFSET} exceeded")
    limit = min(limit, TRADES_MAX_LIMIT)
    fills = world.query_trades(**_filters(request, v2=False))
    return json_response([_row(world, f, v2=False) for f in islice(fills, offset, offset + limit)])


async def trades_v2(request: web.Request) -> web.Response:
    """``GET /v2/trades``: cursor-only keyset feed, ``{data, pagination}``; ``offset`` is a 400."""
    world = request.app[WORLD]
    if "offset" in request.query:
        raise BadParam(400, "offset is not supported; page with cursor")
    cursor = request.query.get("cursor")
    filters = _filters(request, v2=True)
    if cursor:
        ts, seq, limit = decode_cursor(cursor, 3, status=400)
    else:
        ts, seq = 2**62, 2**62
        limit = min(max(q_int(request, "limit", 100) or 100, 1), TRADES_MAX_LIMIT)
    page: list[Fill] = []
    has_more = False
    for fill in world.query_trades(**filters):
        if fill.sort_key() >= (ts, seq):
            continue
        if len(page) == limit:
            has_more = True
            break
        page.append(fill)
    next_cursor = encode_cursor(page[-1].timestamp, page[-1].seq, limit) if has_more else None
    return json_response(
        {
            "data": [_row(world, f, v2=True) for f in page],
            "pagination": {"limit": limit, "offset": 0, "has_more": has_more, "next_cursor": next_cursor},
        }
    )


async def open_interest(request: web.Request) -> web.Response:
    """``GET /oi?market=a,b``: ``[{"market", "value"}]``; unservable markets are absent."""
    world = request.app[WORLD]
    wanted = q_list(request, "market")
    ids = wanted if wanted is not None else sorted(world.open_interest)
    rows = []
    for cid in ids:
        market = world.markets.get(cid)
        if market is None or not market.oi_servable or cid not in world.open_interest:
            continue
        rows.append({"market": cid, "value": payloads.number(round(world.open_interest[cid], 6))})
    return json_response(rows)


def add_routes(app: web.Application) -> None:
    """Register the Data API routes."""
    app.router.add_get("/trades", trades)
    app.router.add_get("/v2/trades", trades_v2)
    app.router.add_get("/oi", open_interest)
