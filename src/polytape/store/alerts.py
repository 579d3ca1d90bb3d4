"""The alert delivery log (``alert_deliveries``): claims, outcomes, and summaries.

A delivery is *claimed* by inserting its row (insert-ignore on ``(channel, dedupe_key)``)
before anything is sent, so a signal goes out at most once per channel even when two
processes see it or a process restarts. The claim's status is then updated to what
happened: ``sent``, ``failed`` (after every retry), ``held`` (over the per-market rate
limit, reported in a digest) or ``stale`` (older than the alert horizon).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from polytape.store.core import Store, Tx
from polytape.store.schema import alert_deliveries, signal_events

STATUSES = ("sent", "failed", "held", "stale", "sending")


def claim(tx: Tx, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert delivery rows whose ``(channel, dedupe_key)`` is new; return the claimed keys."""
    if not rows:
        return set()
    t = alert_deliveries
    base: Any = postgresql.insert(t) if tx.dialect == "postgresql" else sqlite.insert(t)
    stmt = base.on_conflict_do_nothing(index_elements=["channel", "dedupe_key"]).returning(t.c.dedupe_key)
    return {r.dedupe_key for r in tx.execute(stmt, list(rows)).all()}


def finish(
    store: Store,
    channel: str,
    keys: Sequence[str],
    *,
    status: str,
    attempts: int,
    error: str | None,
    now: datetime,
) -> None:
    """Record the outcome of these deliveries of one channel."""
    if not keys:
        return
    t = alert_deliveries
    stmt = (
        sa.update(t)
        .where(t.c.channel == channel, t.c.dedupe_key.in_(list(keys)))
        .values(status=status, attempts=attempts, error=error, finished_at=now)
    )
    store.write(lambda tx: tx.execute(stmt))


def sent_since(store: Store, since: datetime) -> list[dict[str, Any]]:
    """``(channel, market, finished_at)`` of every delivery sent since ``since`` (rate windows)."""
    t = alert_deliveries
    stmt = sa.select(t.c.channel, t.c.market, t.c.finished_at).where(
        t.c.status == "sent", t.c.finished_at >= since
    )
    return store.fetch_all(stmt)


def held_pending(store: Store, since: datetime) -> list[dict[str, Any]]:
    """Signals held back since ``since`` that no digest covers yet, oldest first: each
    signal row (as the engine hands them on) with its ``channel`` and ``market``.

    A digest lists everything its channel held back for its market until then, so the
    rows pending are those logged after the newest digest of the same channel and market
    (the log's ids grow in the order a channel's worker wrote them).
    """
    t, se = alert_deliveries, signal_events
    d = t.alias("digests")
    newest_digest = (
        sa.select(sa.func.max(d.c.id))
        .where(d.c.channel == t.c.channel, d.c.market == t.c.market, d.c.kind == "digest")
        .scalar_subquery()
    )
    stmt = (
        sa.select(t.c.channel.label("_channel"), t.c.market.label("_market"), se)
        .join(se, se.c.dedupe_key == t.c.dedupe_key)
        .where(
            t.c.status == "held",
            t.c.kind == "signal",
            t.c.created_at >= since,
            t.c.id > sa.func.coalesce(newest_digest, 0),
        )
        .order_by(t.c.id)
    )
    out = []
    for row in store.fetch_all(stmt):
        signal = dict(row)
        out.append({"channel": signal.pop("_channel"), "market": signal.pop("_market"), "signal": signal})
    return out


def summary(conn: sa.Connection, since: datetime) -> list[dict[str, Any]]:
    """Per channel: deliveries since ``since`` by status, and the newest one's time."""
    t = alert_deliveries
    stmt = (
        sa.select(t.c.channel_name, t.c.status, sa.func.count(), sa.func.max(t.c.created_at))
        .where(t.c.created_at >= since)
        .group_by(t.c.channel_name, t.c.status)
    )
    out: dict[str, dict[str, Any]] = {}
    for name, status, n, newest in conn.execute(stmt):
        line = out.setdefault(name, {"channel": name, "last": None})
        line[status] = int(n)
        if newest is not None and (line["last"] is None or newest > line["last"]):
            line["last"] = newest
    return sorted(out.values(), key=lambda r: r["channel"])


def recent(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """The newest deliveries, newest first (the dashboard, tests)."""
    t = alert_deliveries
    return store.fetch_all(sa.select(t).order_by(t.c.id.desc()).limit(limit))
