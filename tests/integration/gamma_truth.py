"""What the metadata tables must hold, computed from the simulator's world (not from polytape)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from polytape.sim import World
from polytape.sim.model import Market
from polytape.store import Store
from polytape.store import schema as s

VOLATILE = ("first_seen_at", "updated_at")


def when(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expected_prices(m: Market) -> list[float]:
    if m.closed:
        return [1.0, 0.0] if (m.winner_index or 0) == 0 else [0.0, 1.0]
    yes = Decimal(str(round(min(max(m.price, 0.0005), 0.9995), 4)))
    return [float(yes), float(1 - yes)]


def expected_market(m: Market) -> dict[str, Any]:
    return {
        "condition_id": m.condition_id,
        "gamma_market_id": m.gamma_id,
        "event_id": m.event_id,
        "question_id": m.question_id,
        "slug": m.slug,
        "question": m.question,
        "outcomes": list(m.outcomes),
        "outcome_prices": expected_prices(m),
        "clob_token_ids": list(m.token_ids),
        "gamma_volume": round(m.volume, 6),
        "gamma_liquidity": None if m.closed else m.liquidity,
        "neg_risk": m.neg_risk_gamma,
        "neg_risk_source": None if m.neg_risk_gamma is None else "gamma",
        "neg_risk_market_id": m.neg_risk_market_id if m.neg_risk_gamma else None,
        "enable_order_book": m.enable_order_book,
        "active": not m.closed,
        "closed": m.closed,
        "accepting_orders": not m.closed,
        "tick_size": float(m.tick_size),
        "min_order_size": 5.0,
        "end_date": when(m.end_date),
    }


def expected_event(world: World, event_id: str) -> dict[str, Any]:
    e = world.events[event_id]
    ms = [world.markets[c] for c in e.market_ids]
    return {
        "event_id": e.id,
        "slug": e.slug,
        "title": e.title,
        "active": True,
        "closed": e.closed,
        "neg_risk": e.neg_risk,
        "neg_risk_market_id": e.neg_risk_market_id or None,
        "start_date": when(e.start_date),
        "end_date": when(e.end_date),
        "volume": round(sum(m.volume for m in ms), 6),
        "liquidity": round(sum(m.liquidity for m in ms if not m.closed), 5),
    }


def truth(world: World, *, closed: bool = False, skip_events: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Expected rows of every metadata table for the events with ``closed`` as given."""
    events = [e for e in world.events.values() if e.closed == closed and e.id not in skip_events]
    markets = [world.markets[c] for e in events for c in e.market_ids]
    return {
        "events": sorted((expected_event(world, e.id) for e in events), key=lambda r: r["event_id"]),
        "markets": sorted((expected_market(m) for m in markets), key=lambda r: r["condition_id"]),
        "market_tokens": sorted(
            (
                {"token_id": t, "condition_id": m.condition_id, "outcome": m.outcomes[i], "outcome_index": i}
                for m in markets
                for i, t in enumerate(m.token_ids)
            ),
            key=lambda r: r["token_id"],
        ),
        "event_tags": sorted((e.id, t) for e in events for t in e.tag_ids),
        "market_tags": sorted((m.condition_id, t) for m in markets for t in world.events[m.event_id].tag_ids),
    }


def stored(store: Store) -> dict[str, Any]:
    """The metadata tables as comparable plain data (volatile timestamps dropped)."""

    def rows(table: sa.Table, key: str) -> list[dict[str, Any]]:
        out = [{k: v for k, v in r.items() if k not in VOLATILE} for r in store.fetch_all(sa.select(table))]
        return sorted(out, key=lambda r: r[key])

    return {
        "events": rows(s.events, "event_id"),
        "markets": rows(s.markets, "condition_id"),
        "market_tokens": rows(s.market_tokens, "token_id"),
        "event_tags": sorted((r["event_id"], r["tag_id"]) for r in store.fetch_all(sa.select(s.event_tags))),
        "market_tags": sorted(
            (r["condition_id"], r["tag_id"]) for r in store.fetch_all(sa.select(s.market_tags))
        ),
    }
