"""Reads behind the web dashboard and its JSON API (read-only, a few queries per page).

Every function takes an open connection (``store.read(lambda c: ...)``) so a page costs
one connection and a handful of grouped queries, never one query per market.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from polytape.store.schema import (
    event_tags,
    events,
    market_metrics_ts,
    market_tags,
    market_tokens,
    markets,
    orderbooks,
    signal_events,
    tags,
    tracked_markets,
    trades,
)
from polytape.store.signals import _filtered, book_levels

Conn = sa.Connection
IN_CHUNK = 500


def _rows(conn: Conn, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(dict.fromkeys(values))
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


def _first_token(m: dict[str, Any]) -> str | None:
    ids = m.get("clob_token_ids") or []
    return str(ids[0]) if ids else None


def market_list(conn: Conn, since_24h: datetime) -> list[dict[str, Any]]:
    """The tracked universe with what the Markets page shows, best-ranked first."""
    t, m, e = tracked_markets, markets, events
    stmt = (
        sa.select(
            t.c.condition_id,
            t.c.source,
            t.c.rank,
            t.c.score,
            m.c.question,
            m.c.slug,
            m.c.event_id,
            e.c.title.label("event_title"),
            m.c.clob_token_ids,
            m.c.outcomes,
            m.c.gamma_volume,
            m.c.gamma_liquidity,
            m.c.closed,
        )
        .select_from(
            t.outerjoin(m, m.c.condition_id == t.c.condition_id).outerjoin(e, e.c.event_id == m.c.event_id)
        )
        .order_by(sa.case((t.c.source == "manual", 0), else_=1), t.c.rank, t.c.condition_id)
    )
    rows = _rows(conn, stmt)
    cids = [r["condition_id"] for r in rows]
    tag_map = market_tag_labels(conn, cids)
    yes = {cid: tok for cid, tok in ((r["condition_id"], _first_token(r)) for r in rows) if tok}
    books = {b["token_id"]: b for b in _book_tops(conn, yes.values())}
    oi = latest_oi(conn, cids)
    vol, last = _trade_stats(conn, cids, since_24h)
    out = []
    for r in rows:
        cid = r["condition_id"]
        book = books.get(yes.get(cid, ""), {})
        bid, ask = book.get("best_bid"), book.get("best_ask")
        out.append(
            {
                "condition_id": cid,
                "question": r["question"],
                "slug": r["slug"],
                "event_id": r["event_id"],
                "event_title": r["event_title"],
                "tags": tag_map.get(cid, []),
                "source": r["source"],
                "rank": r["rank"],
                "best_bid": bid,
                "best_ask": ask,
                "spread": round(ask - bid, 6) if bid is not None and ask is not None else None,
                "open_interest": oi.get(cid),
                "volume_24h": vol.get(cid, 0.0),
                "gamma_volume": r["gamma_volume"],
                "last_trade_price": (last.get(cid) or {}).get("price", book.get("last_trade_price")),
                "last_trade_ts": (last.get(cid) or {}).get("trade_ts"),
                "book_updated_at": book.get("updated_at"),
            }
        )
    return out


def market_tag_labels(conn: Conn, condition_ids: Sequence[str]) -> dict[str, list[str]]:
    """Tag labels of each market: its own tags and its event's."""
    out: dict[str, set[str]] = {}
    m, mt, et, tg = markets, market_tags, event_tags, tags
    for chunk in _chunks(condition_ids):
        own = (
            sa.select(mt.c.condition_id, tg.c.label)
            .select_from(mt.join(tg, tg.c.tag_id == mt.c.tag_id))
            .where(mt.c.condition_id.in_(chunk))
        )
        of_event = (
            sa.select(m.c.condition_id, tg.c.label)
            .select_from(m.join(et, et.c.event_id == m.c.event_id).join(tg, tg.c.tag_id == et.c.tag_id))
            .where(m.c.condition_id.in_(chunk))
        )
        for cid, label in [*conn.execute(own), *conn.execute(of_event)]:
            if label:
                out.setdefault(cid, set()).add(str(label))
    return {cid: sorted(labels) for cid, labels in out.items()}


def _book_tops(conn: Conn, token_ids: Iterable[str]) -> list[dict[str, Any]]:
    b = orderbooks
    out: list[dict[str, Any]] = []
    for chunk in _chunks(token_ids):
        stmt = sa.select(
            b.c.token_id, b.c.best_bid, b.c.best_ask, b.c.last_trade_price, b.c.updated_at,
            b.c.snapshot_at, b.c.hash_status, b.c.source,
        ).where(b.c.token_id.in_(chunk))  # fmt: skip
        out += _rows(conn, stmt)
    return out


def latest_oi(conn: Conn, condition_ids: Sequence[str]) -> dict[str, float]:
    """The newest open interest of each market."""
    m = market_metrics_ts
    out: dict[str, float] = {}
    for chunk in _chunks(condition_ids):
        newest = (
            sa.select(m.c.condition_id, sa.func.max(m.c.ts).label("ts"))
            .where(m.c.condition_id.in_(chunk), m.c.open_interest.is_not(None))
            .group_by(m.c.condition_id)
            .subquery()
        )
        stmt = sa.select(m.c.condition_id, m.c.open_interest).select_from(
            m.join(newest, sa.and_(m.c.condition_id == newest.c.condition_id, m.c.ts == newest.c.ts))
        )
        out.update({cid: float(v) for cid, v in conn.execute(stmt) if v is not None})
    return out


def _trade_stats(
    conn: Conn, condition_ids: Sequence[str], since: datetime
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Recorded USD volume since ``since`` and the newest recorded trade, per market."""
    t = trades
    vol: dict[str, float] = {}
    last: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(condition_ids):
        stmt = (
            sa.select(t.c.condition_id, sa.func.sum(t.c.usd_value))
            .where(t.c.condition_id.in_(chunk), t.c.trade_ts >= since)
            .group_by(t.c.condition_id)
        )
        vol.update({cid: float(v or 0) for cid, v in conn.execute(stmt)})
        newest = (
            sa.select(t.c.condition_id.label("cid"), sa.func.max(t.c.trade_ts).label("ts"))
            .where(t.c.condition_id.in_(chunk))
            .group_by(t.c.condition_id)
            .subquery()
        )
        stmt2 = (
            sa.select(t.c.condition_id, t.c.price, t.c.outcome_index, t.c.trade_ts)
            .select_from(
                t.join(newest, sa.and_(t.c.condition_id == newest.c.cid, t.c.trade_ts == newest.c.ts))
            )
            .order_by(t.c.id)
        )
        for cid, price, idx, ts in conn.execute(stmt2):
            yes_price = 1 - price if idx == 1 else price
            last[cid] = {"price": round(float(yes_price), 6), "trade_ts": ts}
    return vol, last


def market_detail(conn: Conn, condition_id: str) -> dict[str, Any] | None:
    """One market: its fields, its event, its tags and its tokens with their stored books."""
    m, e = markets, events
    stmt = (
        sa.select(m, e.c.title.label("event_title"))
        .select_from(m.outerjoin(e, e.c.event_id == m.c.event_id))
        .where(m.c.condition_id == condition_id)
    )
    found = _rows(conn, stmt)
    if not found:
        return None
    market = found[0]
    tok = market_tokens
    tokens = _rows(
        conn,
        sa.select(tok.c.token_id, tok.c.outcome, tok.c.outcome_index)
        .where(tok.c.condition_id == condition_id)
        .order_by(tok.c.outcome_index),
    )
    if not tokens:  # tokens not synced yet: fall back on the market's own list
        outcomes = market.get("outcomes") or []
        tokens = [
            {"token_id": str(t), "outcome": outcomes[i] if i < len(outcomes) else None, "outcome_index": i}
            for i, t in enumerate(market.get("clob_token_ids") or [])
        ]
    ids = [t["token_id"] for t in tokens]
    tops = {b["token_id"]: b for b in _book_tops(conn, ids)}
    levels = book_levels(conn, ids)
    for t in tokens:
        bids, asks = levels.get(t["token_id"], ([], []))
        top = tops.get(t["token_id"], {})
        t.update(
            bids=[[p, s] for p, s in bids],
            asks=[[p, s] for p, s in asks],
            best_bid=bids[0][0] if bids else None,
            best_ask=asks[0][0] if asks else None,
            last_trade_price=top.get("last_trade_price"),
            updated_at=top.get("updated_at"),
            hash_status=top.get("hash_status"),
            source=top.get("source"),
        )
    market["tags"] = market_tag_labels(conn, [condition_id]).get(condition_id, [])
    market["open_interest"] = latest_oi(conn, [condition_id]).get(condition_id)
    tracked = conn.execute(
        sa.select(tracked_markets.c.source).where(tracked_markets.c.condition_id == condition_id)
    ).scalar()
    market["tracked"] = tracked
    market["tokens"] = tokens
    return market


def recent_trades(conn: Conn, condition_id: str, limit: int) -> list[dict[str, Any]]:
    t = trades
    stmt = (
        sa.select(
            t.c.id,
            t.c.trade_ts,
            t.c.wallet,
            t.c.side,
            t.c.outcome,
            t.c.outcome_index,
            t.c.size,
            t.c.price,
            t.c.usd_value,
            t.c.transaction_hash,
        )
        .where(t.c.condition_id == condition_id)
        .order_by(t.c.trade_ts.desc(), t.c.id.desc())
        .limit(limit)
    )
    return _rows(conn, stmt)


def metrics_history(conn: Conn, condition_id: str, since: datetime) -> list[dict[str, Any]]:
    """``(ts, open_interest, mid_price, last_trade_price)`` snapshots since ``since``, oldest first."""
    m = market_metrics_ts
    stmt = (
        sa.select(m.c.ts, m.c.open_interest, m.c.mid_price, m.c.last_trade_price)
        .where(m.c.condition_id == condition_id, m.c.ts >= since)
        .order_by(m.c.ts)
    )
    return _rows(conn, stmt)


def trade_prices(conn: Conn, condition_id: str, since: datetime, limit: int = 5000) -> list[dict[str, Any]]:
    """Recorded trades since ``since`` as first-outcome prices, oldest first."""
    t = trades
    yes = sa.case((t.c.outcome_index == 1, 1 - t.c.price), else_=t.c.price)
    stmt = (
        sa.select(t.c.trade_ts, yes.label("price"), t.c.usd_value)
        .where(t.c.condition_id == condition_id, t.c.trade_ts >= since)
        .order_by(t.c.trade_ts)
        .limit(limit)
    )
    return _rows(conn, stmt)


def signals_page(
    conn: Conn,
    *,
    since: datetime | None,
    after_id: int | None,
    types: Sequence[str],
    markets_: Sequence[str],
    limit: int,
) -> list[dict[str, Any]]:
    """Signals by time or after an id, filtered by type and market; newest last."""
    s = signal_events
    stmt = sa.select(s)
    if since is not None:
        stmt = stmt.where(s.c.detected_at >= since)
    if after_id is not None:
        stmt = stmt.where(s.c.id > after_id)
    stmt = _filtered(stmt, types, markets_)
    if after_id is not None:
        return _rows(conn, stmt.order_by(s.c.id).limit(limit))
    newest = _rows(conn, stmt.order_by(s.c.id.desc()).limit(limit))
    return newest[::-1]


def max_signal_id(conn: Conn) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(signal_events.c.id), 0))).scalar_one())


def token_coverage(conn: Conn) -> list[dict[str, Any]]:
    """Each tracked token's stored book: since when (last snapshot), last update, hash state."""
    tm, tok, b, m = tracked_markets, market_tokens, orderbooks, markets
    stmt = (
        sa.select(
            tok.c.token_id,
            tok.c.condition_id,
            tok.c.outcome,
            m.c.question,
            b.c.snapshot_at,
            b.c.updated_at,
            b.c.hash_status,
            b.c.source,
        )
        .select_from(
            tm.join(tok, tok.c.condition_id == tm.c.condition_id)
            .outerjoin(m, m.c.condition_id == tm.c.condition_id)
            .outerjoin(b, b.c.token_id == tok.c.token_id)
        )
        .order_by(tok.c.condition_id, tok.c.outcome_index)
    )
    return _rows(conn, stmt)
