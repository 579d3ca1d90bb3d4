"""The tracked universe: manual overrides and auto-selected markets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from polytape.store.core import Store
from polytape.store.schema import market_tokens, markets, tracked_markets


def add_manual(store: Store, condition_ids: Sequence[str], now: datetime | None = None) -> int:
    """Make these markets manual overrides (an auto row becomes manual)."""
    now = now or datetime.now(UTC)
    rows = [
        {"condition_id": cid.strip(), "source": "manual", "rank": None, "score": None, "selected_at": now}
        for cid in dict.fromkeys(condition_ids)
        if cid.strip()
    ]
    return store.upsert(tracked_markets, rows, update=["source", "selected_at"])


def remove_manual(store: Store, condition_ids: Sequence[str]) -> int:
    t = tracked_markets
    return store.write(
        lambda tx: tx.delete(t, t.c.source == "manual", t.c.condition_id.in_(list(condition_ids)))
    )


def list_tracked(store: Store) -> list[dict[str, Any]]:
    """Tracked markets, manual first, then by rank, with their questions."""
    t, m = tracked_markets, markets
    stmt = (
        sa.select(t, m.c.question)
        .select_from(t.outerjoin(m, m.c.condition_id == t.c.condition_id))
        .order_by(sa.case((t.c.source == "manual", 0), else_=1), t.c.rank, t.c.condition_id)
    )
    return store.fetch_all(stmt)


def tracked_condition_ids(store: Store) -> list[str]:
    """Condition ids of the tracked universe, manual first, then by rank."""
    return [r["condition_id"] for r in list_tracked(store)]


def tracked_tokens(store: Store) -> dict[str, str]:
    """``token_id -> condition_id`` for every token of the tracked universe's markets."""
    t, mt = tracked_markets, market_tokens
    stmt = (
        sa.select(mt.c.token_id, mt.c.condition_id)
        .select_from(mt.join(t, t.c.condition_id == mt.c.condition_id))
        .order_by(mt.c.condition_id, mt.c.outcome_index)
    )
    return store.read(lambda c: {str(tok): str(cid) for tok, cid in c.execute(stmt)})
