"""Corrupted answers: the ``bad_fields``/``malformed_json`` HTTP faults and WS ``bad_hash``.

``bad_fields`` rewrites a few items of an otherwise valid list answer: a
required field removed or wrongly typed, the rest of the page untouched. Every
corrupted item is described by a :class:`Corruption` (its index on the page, the
field, the original item), so tests can check that exactly those were rejected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from polytape.sim.httputil import dumps

Item = dict[str, Any]
Corrupter = Callable[[Item], str]  # mutates the item, returns the corrupted field's path

# list endpoint → key of the item list in the JSON answer (None: the answer is the list)
BAD_FIELDS_PATHS: dict[str, str | None] = {
    "/trades": None,
    "/v2/trades": "data",
    "/oi": None,
    "/books": None,
    "/events": None,
    "/events/keyset": "events",
    "/markets": None,
    "/markets/keyset": "markets",
}

UNPARSEABLE_TOKEN_IDS = '["1234567890", '


@dataclass
class Corruption:
    """One item of a list answer served with a bad field."""

    host: str
    path: str
    index: int  # position of the item in the served page
    field: str  # dotted path of the bad field, e.g. ``size`` or ``markets[0].clobTokenIds``
    how: str  # the corruption's name (see ``CORRUPTIONS``)
    original: Any  # the item as it would have been served


def _drop(name: str) -> Corrupter:
    def run(item: Item) -> str:
        item.pop(name, None)
        return name

    return run


def _set(name: str, value: Any) -> Corrupter:
    def run(item: Item) -> str:
        item[name] = value
        return name

    return run


def _price(name: str, above: bool) -> Corrupter:
    def run(item: Item) -> str:
        value = item.get(name)
        base = abs(float(value)) if isinstance(value, int | float) else 0.5
        item[name] = round(1.0 + max(base, 0.01), 6) if above else -max(base, 0.01)
        return name

    return run


def _first_level(key: str, name: str, value: str) -> Corrupter:
    def run(item: Item) -> str:
        levels = item.get(key)
        if not isinstance(levels, list) or not levels:
            item[key] = levels = [{"price": "0.5", "size": "10"}]
        levels[0] = {**levels[0], name: value}
        return f"{key}[0].{name}"

    return run


def _nested_market(name: str, action: str) -> Corrupter:
    def run(item: Item) -> str:
        markets = item.get("markets")
        if not isinstance(markets, list) or not markets:
            item["markets"] = {"markets": markets}
            return "markets"
        if action == "drop":
            markets[0].pop(name, None)
        else:
            markets[0][name] = UNPARSEABLE_TOKEN_IDS
        return f"markets[0].{name}"

    return run


def _trades(condition: str) -> dict[str, Corrupter]:
    return {
        "size_string": _set("size", "n/a"),
        "price_negative": _price("price", above=False),
        "price_above_one": _price("price", above=True),
        "timestamp_missing": _drop("timestamp"),
        "condition_missing": _drop(condition),
    }


_MARKETS: dict[str, Corrupter] = {
    "id_missing": _drop("id"),
    "condition_missing": _drop("conditionId"),
    "clob_token_ids_unparseable": _set("clobTokenIds", UNPARSEABLE_TOKEN_IDS),
    "outcomes_wrong_type": _set("outcomes", 2),
}
_EVENTS: dict[str, Corrupter] = {
    "id_missing": _drop("id"),
    "markets_not_list": _set("markets", {"count": 1}),
    "market_condition_missing": _nested_market("conditionId", "drop"),
    "market_clob_token_ids_unparseable": _nested_market("clobTokenIds", "unparseable"),
}

# path → corruption name → corrupter
CORRUPTIONS: dict[str, dict[str, Corrupter]] = {
    "/trades": _trades("conditionId"),
    "/v2/trades": _trades("condition_id"),
    "/oi": {"value_string": _set("value", "n/a"), "market_missing": _drop("market")},
    "/books": {
        "asset_missing": _drop("asset_id"),
        "bids_not_list": _set("bids", "none"),
        "level_size_string": _first_level("bids", "size", "n/a"),
        "level_price_above_one": _first_level("asks", "price", "1.5"),
    },
    "/events": _EVENTS,
    "/events/keyset": _EVENTS,
    "/markets": _MARKETS,
    "/markets/keyset": _MARKETS,
}
CORRUPTION_NAMES = frozenset(name for table in CORRUPTIONS.values() for name in table)


def _rebuild(response: web.Response, body: bytes, status: int) -> web.Response:
    """``response`` with a new body and status, its other headers kept."""
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def bad_fields(
    response: web.StreamResponse,
    *,
    host: str,
    path: str,
    items: int,
    how: str | None,
    rng: random.Random,
) -> tuple[web.StreamResponse, list[Corruption]]:
    """Corrupt ``items`` items of a 200 list answer; returns the answer and what was done."""
    table = CORRUPTIONS.get(path)
    if table is None or response.status != 200 or not isinstance(response, web.Response):
        return response, []
    if not isinstance(response.body, bytes):
        return response, []
    data = json.loads(response.body)
    key = BAD_FIELDS_PATHS[path]
    rows = data.get(key) if key is not None and isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        return response, []
    done: list[Corruption] = []
    for index in sorted(rng.sample(range(len(rows)), min(max(items, 1), len(rows)))):
        name = how if how in table else rng.choice(sorted(table))
        original = copy.deepcopy(rows[index])
        field = table[name](rows[index])
        done.append(Corruption(host, path, index, field, name, original))
    return _rebuild(response, dumps(data).encode(), 200), done


def malformed_json(response: web.StreamResponse) -> web.StreamResponse:
    """A 200 ``application/json`` answer holding the first half of the real body (invalid JSON)."""
    body = response.body if isinstance(response, web.Response) else None
    raw = body if isinstance(body, bytes) and len(body) > 1 else b'{"error": "'
    if not isinstance(response, web.Response):
        return web.Response(body=raw, status=200, content_type="application/json")
    return _rebuild(response, raw[: max(1, len(raw) // 2)], 200)


def wrong_hash(payload: Any) -> Any:
    """A copy of a WS ``book``/``price_change`` with every hash wrong (levels untouched)."""
    out = copy.deepcopy(payload)

    def bad(value: Any) -> str:
        return hashlib.sha1(f"sim-bad-hash:{value}".encode()).hexdigest()

    if isinstance(out, dict):
        if "hash" in out:
            out["hash"] = bad(out["hash"])
        for change in out.get("price_changes", []):
            change["hash"] = bad(change["hash"])
    return out


def has_hash(payload: Any) -> bool:
    """True for a WS ``book`` or ``price_change`` message (the ones ``bad_hash`` applies to)."""
    return isinstance(payload, dict) and payload.get("event_type") in ("book", "price_change")
