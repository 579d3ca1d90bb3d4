"""Simulated Gamma API: ``/events/keyset``, ``/events``, ``/markets(/keyset)``, ``/tags``, ``/sports``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from polytape.sim import payloads
from polytape.sim.httputil import (
    WORLD,
    BadParam,
    decode_cursor,
    encode_cursor,
    json_response,
    q_bool,
    q_int,
    q_list,
)
from polytape.sim.model import Event, Market
from polytape.sim.world import World

EVENTS_MAX = 500
MARKETS_LEGACY_MAX = 500
MARKETS_KEYSET_MAX = 100
SUNSET = "Fri, 01 May 2026 00:00:00 GMT"

_EVENT_ORDER = frozenset(
    {
        "id",
        "title",
        "slug",
        "volume",
        "volume24hr",
        "volume1wk",
        "volume1mo",
        "volume1yr",
        "liquidity",
        "startDate",
        "endDate",
        "createdAt",
        "updatedAt",
        "closedTime",
        "competitive",
        "commentCount",
        "liquidityClob",
        "startTime",
    }
)
_MARKET_ORDER = frozenset(
    {
        "id",
        "question",
        "slug",
        "volume",
        "volumeNum",
        "volume24hr",
        "volume1wk",
        "volume1mo",
        "volume1yr",
        "liquidity",
        "liquidityNum",
        "startDate",
        "endDate",
        "createdAt",
        "updatedAt",
        "closedTime",
        "competitive",
        "spread",
        "lastTradePrice",
        "bestBid",
        "bestAsk",
        "oneDayPriceChange",
    }
)


def _deprecated(listing: str) -> dict[str, str]:
    return {
        "Deprecation": "true",
        "Sunset": SUNSET,
        "Warning": f'299 - "use /{listing}/keyset"',
        "Cache-Control": "public, max-age=300",
    }


def _sort_key(field: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(field)
        if value is None:
            return (0, 0)
        if field == "id" or (isinstance(value, str) and field in ("volume", "liquidity")):
            return (1, float(value))
        return (1, value)

    return key


def _order(rows: list[dict[str, Any]], request: web.Request, allowed: frozenset[str]) -> list[dict[str, Any]]:
    """Apply ``order``/``ascending``: camelCase fields sort, snake_case ones are ignored, others 422."""
    ascending = q_bool(request, "ascending", True, status=422)
    fields = [f.strip() for f in request.query.get("order", "").split(",") if f.strip()]
    fields = [f for f in fields if "_" not in f]  # the real API silently ignores snake_case
    for field in fields:
        if field not in allowed:
            raise BadParam(422, "order fields are not valid")
    for field in reversed(fields or ["id"]):
        rows.sort(key=_sort_key(field), reverse=not ascending)
    return rows


def _event_matches(world: World, event: Event, request: web.Request) -> bool:
    closed = q_bool(request, "closed", None, status=422)
    active = q_bool(request, "active", None, status=422)
    archived = q_bool(request, "archived", None, status=422)
    if closed is not None and event.closed != closed:
        return False
    if active is False or archived is True:  # every simulated event is active, none archived
        return False
    ids = q_list(request, "id")
    if ids is not None and event.id not in ids:
        return False
    slugs = q_list(request, "slug")
    if slugs is not None and event.slug not in slugs:
        return False
    tag_ids = q_list(request, "tag_id")
    return tag_ids is None or bool(set(tag_ids) & set(event.tag_ids))


def _event_rows(world: World, request: web.Request) -> list[dict[str, Any]]:
    tags = {t.id: t for t in world.tags}
    return [
        payloads.gamma_event(e, [world.markets[c] for c in e.market_ids], tags)
        for e in world.events.values()
        if _event_matches(world, e, request)
    ]


def _limit(request: web.Request, default: int, maximum: int, *, strict: bool) -> int:
    """Keyset lists reject an out-of-range limit (422); legacy lists clamp it."""
    limit = q_int(request, "limit", default, status=422)
    assert limit is not None
    if strict and not 1 <= limit <= maximum:
        raise BadParam(422, f"limit must be between 1 and {maximum}")
    return max(0, min(limit, maximum))


def _keyset_page(
    rows: list[dict[str, Any]], request: web.Request, maximum: int, item_key: str
) -> dict[str, Any]:
    if "offset" in request.query:
        raise BadParam(422, "offset is not supported on keyset endpoints; use after_cursor")
    limit = _limit(request, 20, maximum, strict=True)
    rows.sort(key=lambda r: int(r["id"]))
    after = request.query.get("after_cursor")  # `cursor=` is ignored: page one again, as for real
    if after:
        (last_id,) = decode_cursor(after, 1, status=422)
        rows = [r for r in rows if int(r["id"]) > last_id]
    page = rows[:limit]
    out: dict[str, Any] = {item_key: page}
    if len(rows) > limit:
        out["next_cursor"] = encode_cursor(page[-1]["id"])
    return out


async def events_keyset(request: web.Request) -> web.Response:
    """``GET /events/keyset``: ``{"events": [...], "next_cursor": ...}`` (cursor absent at the end)."""
    world = request.app[WORLD]
    return json_response(_keyset_page(_event_rows(world, request), request, EVENTS_MAX, "events"))


async def events_legacy(request: web.Request) -> web.Response:
    """``GET /events`` (deprecated offset list, Sunset headers)."""
    world = request.app[WORLD]
    limit = _limit(request, 100, EVENTS_MAX, strict=False)
    offset = q_int(request, "offset", 0, status=422) or 0
    rows = _order(_event_rows(world, request), request, _EVENT_ORDER)
    return json_response(rows[offset : offset + limit], headers=_deprecated("events"))


def _market_matches(market: Market, request: web.Request, *, closed_default: bool | None) -> bool:
    closed = q_bool(request, "closed", closed_default, status=422)
    if closed is not None and market.closed != closed:
        return False
    if q_bool(request, "active", None, status=422) is False:
        return False
    for name, value in (
        ("id", market.gamma_id),
        ("slug", market.slug),
        ("condition_ids", market.condition_id),
    ):
        wanted = q_list(request, name)
        if wanted is not None and value not in wanted:
            return False
    tokens = q_list(request, "clob_token_ids")
    return tokens is None or bool(set(tokens) & set(market.token_ids))


def _market_rows(world: World, request: web.Request, *, closed_default: bool | None) -> list[dict[str, Any]]:
    include_tag = q_bool(request, "include_tag", False, status=422)
    tags = {t.id: t for t in world.tags}
    rows = []
    for market in world.markets.values():
        if not _market_matches(market, request, closed_default=closed_default):
            continue
        event = world.event_of(market)
        row = payloads.gamma_market(market, event, standalone=True)
        if include_tag:
            row["tags"] = [payloads.gamma_tag(tags[t]) for t in event.tag_ids if t in tags]
        rows.append(row)
    return rows


async def markets_legacy(request: web.Request) -> web.Response:
    """``GET /markets`` (deprecated; ``closed`` defaults to false since 2026-04-09)."""
    world = request.app[WORLD]
    limit = _limit(request, 100, MARKETS_LEGACY_MAX, strict=False)
    offset = q_int(request, "offset", 0, status=422) or 0
    rows = _order(_market_rows(world, request, closed_default=False), request, _MARKET_ORDER)
    return json_response(rows[offset : offset + limit], headers=_deprecated("markets"))


async def markets_keyset(request: web.Request) -> web.Response:
    """``GET /markets/keyset`` (limit 1-100)."""
    world = request.app[WORLD]
    rows = _market_rows(world, request, closed_default=False)
    return json_response(_keyset_page(rows, request, MARKETS_KEYSET_MAX, "markets"))


async def tags(request: web.Request) -> web.Response:
    """``GET /tags`` (limit/offset)."""
    world = request.app[WORLD]
    limit = q_int(request, "limit", 100, status=422) or 0
    offset = q_int(request, "offset", 0, status=422) or 0
    rows = [payloads.gamma_tag(t) for t in world.tags]
    return json_response(rows[offset : offset + limit])


async def sports(request: web.Request) -> web.Response:
    """``GET /sports``."""
    return json_response([payloads.gamma_sport(s) for s in request.app[WORLD].sports])


def add_routes(app: web.Application) -> None:
    """Register the Gamma routes."""
    app.router.add_get("/events/keyset", events_keyset)
    app.router.add_get("/events", events_legacy)
    app.router.add_get("/markets/keyset", markets_keyset)
    app.router.add_get("/markets", markets_legacy)
    app.router.add_get("/tags", tags)
    app.router.add_get("/sports", sports)
