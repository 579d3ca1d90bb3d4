"""Rows of the database's time series for ``polytape export`` (open interest, signals)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from polytape.store.core import Store
from polytape.store.schema import market_metrics_ts, signal_events


def read_open_interest(
    store: Store, since: datetime, until: datetime, markets: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """``market_metrics_ts`` rows with open interest in ``[since, until)``, by time."""
    t = market_metrics_ts
    query = sa.select(t.c.condition_id, t.c.ts, t.c.open_interest).where(
        t.c.ts >= since, t.c.ts < until, t.c.open_interest.is_not(None)
    )
    if markets:
        query = query.where(t.c.condition_id.in_(list(markets)))
    query = query.order_by(t.c.ts, t.c.condition_id)
    return store.read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])


def read_signals(
    store: Store,
    since: datetime,
    until: datetime,
    markets: Sequence[str] | None = None,
    tokens: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``signal_events`` detected in ``[since, until)``, by time."""
    t = signal_events
    query = sa.select(
        t.c.signal_type, t.c.condition_id, t.c.token_id, t.c.detected_at, t.c.score, t.c.payload
    ).where(t.c.detected_at >= since, t.c.detected_at < until)
    if markets:
        query = query.where(t.c.condition_id.in_(list(markets)))
    if tokens:
        query = query.where(t.c.token_id.in_(list(tokens)))
    query = query.order_by(t.c.detected_at, t.c.id)
    return store.read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])
