"""Reads behind ``polytape status``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from polytape.store.alerts import summary as alert_summary
from polytape.store.core import Store
from polytape.store.runs import latest_runs, rejected_counts
from polytape.store.schema import orderbooks, signal_events, tracked_markets, trades
from polytape.store.workers import list_workers


def status_snapshot(
    store: Store, now: datetime, book_stale_before: datetime, since: datetime, worker_ttl: float = 10.0
) -> dict[str, Any]:
    """Everything ``status`` shows, in a handful of queries."""
    ob, tm = orderbooks, tracked_markets

    def counts(conn: sa.Connection) -> dict[str, Any]:
        def one(stmt: Any) -> Any:
            return conn.execute(stmt).scalar()

        return {
            "trades": one(sa.select(sa.func.count()).select_from(trades)),
            "newest_trade": one(sa.select(sa.func.max(trades.c.trade_ts))),
            "tracked_markets": one(sa.select(sa.func.count()).select_from(tm)),
            "books": one(sa.select(sa.func.count()).select_from(ob)),
            "stale_books": one(
                sa.select(sa.func.count())
                .select_from(ob)
                .where(
                    ob.c.condition_id.in_(sa.select(tm.c.condition_id)), ob.c.updated_at < book_stale_before
                )
            ),
            "signals_recent": one(
                sa.select(sa.func.count())
                .select_from(signal_events)
                .where(signal_events.c.detected_at >= since)
            ),
        }

    snap = store.read(counts)
    snap["runs"] = latest_runs(store)
    snap["runner"] = store.get_state("runner")
    snap["ws_feed"] = store.get_state("ws_feed")
    snap["rejected_recent"] = rejected_counts(store, since)
    snap["alerts"] = store.read(lambda c: alert_summary(c, now - timedelta(hours=24)))
    snap["workers"] = [
        {
            "worker_id": w["worker_id"],
            "host": w["host"],
            "pid": w["pid"],
            "tokens": w["tokens"],
            "alive": w["alive"],
            "started_at": w["started_at"],
            "heartbeat_at": w["heartbeat_at"],
            "heartbeat_age_s": w["heartbeat_age_s"],
        }
        for w in list_workers(store, now, worker_ttl)
        if w["alive"] or w["stopped_at"] is None  # stopped cleanly: not worth a line
    ]
    return snap
