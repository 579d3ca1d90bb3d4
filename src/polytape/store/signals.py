"""Reads the signal engine needs and the writes of ``signal_events``.

Reads take an open connection so a pass makes a few batched queries on one
connection (never one per market); ``IN`` lists are chunked to stay under every
engine's parameter limit. Signals are written with insert-ignore on their
``dedupe_key``, so a rerun, a restart or two workers never write one twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from polytape.store.core import Store, Tx
from polytape.store.schema import (
    events,
    market_metrics_ts,
    market_tokens,
    markets,
    orderbook_levels,
    orderbooks,
    signal_events,
    sync_state,
    trades,
)

IN_CHUNK = 500
NEG_RISK_ARB = "neg_risk_arb"  # the one signal type whose subject is an event, not a market
BID_SIDES = frozenset({"BUY", "BID", "BIDS", "B"})
Conn = sa.Connection


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(dict.fromkeys(values))
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


def _rows(conn: Conn, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(stmt)]


# --- writes -------------------------------------------------------------------------


def insert_signals_returning(tx: Tx, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert new signals (a known ``dedupe_key`` is skipped); return those inserted, with ids."""
    if not rows:
        return []
    by_key = {r["dedupe_key"]: r for r in rows}
    base: Any = (
        postgresql.insert(signal_events) if tx.dialect == "postgresql" else sqlite.insert(signal_events)
    )
    stmt = base.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(
        signal_events.c.id, signal_events.c.dedupe_key
    )
    inserted: list[dict[str, Any]] = []
    for chunk in _chunks(by_key):
        for row in tx.execute(stmt, [by_key[k] for k in chunk]).all():
            inserted.append({**by_key[row.dedupe_key], "id": int(row.id)})
    inserted.sort(key=lambda r: r["id"])
    return inserted


# --- reading signals back --------------------------------------------------------------


def _filtered(stmt: Any, types: Sequence[str], markets_: Sequence[str]) -> Any:
    """Only ``types`` and ``markets_`` (when given). A market also matches the neg-risk
    arbitrages of its event: their row has no market, their payload names the event."""
    t = signal_events
    if types:
        stmt = stmt.where(t.c.signal_type.in_(list(types)))
    if markets_:
        events_of = sa.select(markets.c.event_id).where(
            markets.c.condition_id.in_(list(markets_)), markets.c.event_id.is_not(None)
        )
        of_event = sa.and_(
            t.c.signal_type == NEG_RISK_ARB,
            t.c.payload["event_id"].as_string().in_(events_of),
        )
        stmt = stmt.where(sa.or_(t.c.condition_id.in_(list(markets_)), of_event))
    return stmt


def list_signals(
    store: Store, since: datetime, types: Sequence[str] = (), markets: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Signals detected at or after ``since``, oldest first, optionally by type and market."""
    stmt = sa.select(signal_events).where(signal_events.c.detected_at >= since)
    return store.fetch_all(_filtered(stmt, types, markets).order_by(signal_events.c.id))


def signals_after_id(
    store: Store, last_id: int, types: Sequence[str] = (), markets: Sequence[str] = (), limit: int = 500
) -> list[dict[str, Any]]:
    """Signals with an id above ``last_id`` (the tail's cursor), oldest first."""
    stmt = sa.select(signal_events).where(signal_events.c.id > last_id)
    return store.fetch_all(_filtered(stmt, types, markets).order_by(signal_events.c.id).limit(limit))


def max_signal_id(store: Store) -> int:
    """The newest signal's id (0 when there is none)."""
    stmt = sa.select(sa.func.coalesce(sa.func.max(signal_events.c.id), 0))
    return int(store.read(lambda c: c.execute(stmt).scalar_one()))


def recent_signals(
    conn: Conn, types: Sequence[str], *, since: datetime | None = None, after_id: int | None = None
) -> list[dict[str, Any]]:
    """``(id, signal_type, detected_at, payload)`` of signals of ``types`` detected since
    ``since`` or stored after ``after_id`` (the cooldown's priors), oldest first."""
    t = signal_events
    stmt = sa.select(t.c.id, t.c.signal_type, t.c.detected_at, t.c.payload).where(
        t.c.signal_type.in_(list(types))
    )
    if since is not None:
        stmt = stmt.where(t.c.detected_at >= since)
    if after_id is not None:
        stmt = stmt.where(t.c.id > after_id)
    return _rows(conn, stmt.order_by(t.c.id))


# --- trades ---------------------------------------------------------------------------

_TRADE_COLS = [
    trades.c.id,
    trades.c.dedupe_key,
    trades.c.transaction_hash,
    trades.c.wallet,
    trades.c.condition_id,
    trades.c.token_id,
    trades.c.side,
    trades.c.outcome,
    trades.c.outcome_index,
    trades.c.size,
    trades.c.price,
    trades.c.usd_value,
    trades.c.trade_ts,
]


def _with_question(stmt: Any) -> Any:
    return stmt.add_columns(markets.c.question).select_from(
        trades.outerjoin(markets, markets.c.condition_id == trades.c.condition_id)
    )


def new_trades(conn: Conn, after_id: int, upto_id: int, since: datetime, limit: int) -> list[dict[str, Any]]:
    """Trades with ``after_id < id <= upto_id`` traded at or after ``since``, oldest id first,
    with their market question."""
    stmt = _with_question(sa.select(*_TRADE_COLS)).where(
        trades.c.id > after_id, trades.c.id <= upto_id, trades.c.trade_ts >= since
    )
    return _rows(conn, stmt.order_by(trades.c.id).limit(limit))


def state_stmt(key: str) -> Any:
    """SELECT of one ``sync_state`` value (run it on the pass's connection)."""
    return sa.select(sync_state.c.value).where(sync_state.c.key == key)


def max_trade_id(conn: Conn) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(trades.c.id), 0))).scalar_one())


def wallet_trades(conn: Conn, groups: Iterable[tuple[str, str]], since: datetime) -> list[dict[str, Any]]:
    """Every trade at or after ``since`` of these ``(wallet, condition_id)`` pairs (accumulation
    windows); found through the ``(condition_id, trade_ts)`` index, not a scan of wallets."""
    wanted = set(groups)
    by_market: dict[str, set[str]] = {}
    for wallet, cid in wanted:
        by_market.setdefault(cid, set()).add(wallet)
    out: list[dict[str, Any]] = []
    for chunk in _chunks(by_market):
        wallets = sorted({w for cid in chunk for w in by_market[cid]})
        stmt = _with_question(sa.select(*_TRADE_COLS)).where(
            trades.c.condition_id.in_(chunk), trades.c.trade_ts >= since, trades.c.wallet.in_(wallets)
        )
        out += [r for r in _rows(conn, stmt) if (r["wallet"], r["condition_id"]) in wanted]
    return out


def trade_price_extremes(conn: Conn, condition_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
    """Per market, the trades since ``since`` that a move can be measured between: the newest,
    the lowest and the highest first-outcome price (rows of ``condition_id, price, trade_ts``;
    at an extreme price, its earliest trade).

    Both forms read the ``(condition_id, trade_ts)`` index once per chunk of markets; each
    engine gets the one it runs fastest (PostgreSQL ranks with window functions; SQLite
    groups, then looks the few extreme rows up).
    """
    ranked = conn.dialect.name == "postgresql"
    out: list[dict[str, Any]] = []
    for chunk in _chunks(condition_ids):
        out += _ranked_extremes(conn, chunk, since) if ranked else _grouped_extremes(conn, chunk, since)
    return out


def _ranked_extremes(conn: Conn, chunk: list[str], since: datetime) -> list[dict[str, Any]]:
    t = trades
    yes = _yes(t)
    ranked = (
        sa.select(
            t.c.condition_id,
            yes.label("price"),
            t.c.trade_ts,
            _rank(t.c.condition_id, t.c.trade_ts.desc(), t.c.id.desc()).label("newest"),
            _rank(t.c.condition_id, yes, t.c.trade_ts).label("lowest"),
            _rank(t.c.condition_id, yes.desc(), t.c.trade_ts).label("highest"),
        )
        .where(t.c.condition_id.in_(chunk), t.c.trade_ts >= since)
        .subquery()
    )
    stmt = sa.select(ranked.c.condition_id, ranked.c.price, ranked.c.trade_ts).where(
        sa.or_(ranked.c.newest == 1, ranked.c.lowest == 1, ranked.c.highest == 1)
    )
    return [
        {"condition_id": cid, "price": float(price), "trade_ts": _when(ts)}
        for cid, price, ts in conn.execute(stmt)
    ]


def _grouped_extremes(conn: Conn, chunk: list[str], since: datetime) -> list[dict[str, Any]]:
    t, u = trades, trades.alias("u")
    g = (
        sa.select(
            t.c.condition_id.label("cid"),
            sa.func.min(_yes(t)).label("lo"),
            sa.func.max(_yes(t)).label("hi"),
            sa.func.max(t.c.trade_ts).label("newest_ts"),
        )
        .where(t.c.condition_id.in_(chunk), t.c.trade_ts >= since)
        .group_by(t.c.condition_id)
        .subquery()
    )
    newest = (
        sa.select(_yes(u))
        .where(u.c.condition_id == g.c.cid, u.c.trade_ts == g.c.newest_ts)
        .order_by(u.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )

    def first_at(price: Any) -> Any:
        return (
            sa.select(sa.func.min(u.c.trade_ts))
            .where(u.c.condition_id == g.c.cid, u.c.trade_ts >= since, _yes(u) == price)
            .scalar_subquery()
        )

    stmt = sa.select(g.c.cid, g.c.newest_ts, newest, g.c.lo, first_at(g.c.lo), g.c.hi, first_at(g.c.hi))
    out: list[dict[str, Any]] = []
    for cid, *points in conn.execute(stmt):
        for price_at, price in ((points[0], points[1]), (points[3], points[2]), (points[5], points[4])):
            if price_at is not None and price is not None:
                out.append({"condition_id": cid, "price": float(price), "trade_ts": _when(price_at)})
    return out


def _rank(partition: Any, *order: Any) -> Any:
    return sa.func.row_number().over(partition_by=partition, order_by=order)


def _when(value: Any) -> datetime:
    """A time read through a subquery: SQLite may hand back naive text, PostgreSQL an aware datetime."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _yes(t: Any) -> Any:
    """A trade's price seen from the first outcome."""
    return sa.case((t.c.outcome_index == 1, 1 - t.c.price), else_=t.c.price)


# --- books ---------------------------------------------------------------------------


def book_tops(conn: Conn, updated_since: datetime) -> list[dict[str, Any]]:
    """Stored books updated at or after ``updated_since``: best prices and times only."""
    b = orderbooks
    stmt = sa.select(b.c.token_id, b.c.condition_id, b.c.best_bid, b.c.best_ask, b.c.updated_at).where(
        b.c.updated_at >= updated_since
    )
    return _rows(conn, stmt)


def book_levels(conn: Conn, token_ids: Iterable[str]) -> dict[str, tuple[list[tuple[float, float]], ...]]:
    """``token_id -> (bids, asks)``, each best first; sides 'BUY'/'bid' are bids."""
    lv = orderbook_levels
    out: dict[str, tuple[list[tuple[float, float]], ...]] = {}
    for chunk in _chunks(token_ids):
        stmt = sa.select(lv.c.token_id, lv.c.side, lv.c.price, lv.c.size).where(lv.c.token_id.in_(chunk))
        for token_id, side, price, size in conn.execute(stmt):
            bids, asks = out.setdefault(token_id, ([], []))
            (bids if str(side).upper() in BID_SIDES else asks).append((float(price), float(size)))
    for bids, asks in out.values():
        bids.sort(reverse=True)
        asks.sort()
    return out


# --- markets and events ------------------------------------------------------------------


def market_rows(conn: Conn, condition_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Markets by condition id: question, event, negative risk, closed, token ids."""
    m = markets
    cols = [m.c.condition_id, m.c.question, m.c.event_id, m.c.neg_risk, m.c.closed, m.c.clob_token_ids]
    out: list[dict[str, Any]] = []
    for chunk in _chunks(condition_ids):
        out += _rows(conn, sa.select(*cols).where(m.c.condition_id.in_(chunk)))
    return out


def open_markets_of_events(conn: Conn, event_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every market of these events that is not closed (a neg-risk event's outcomes)."""
    m = markets
    cols = [m.c.condition_id, m.c.question, m.c.event_id, m.c.neg_risk, m.c.closed, m.c.clob_token_ids]
    out: list[dict[str, Any]] = []
    for chunk in _chunks(event_ids):
        stmt = sa.select(*cols).where(m.c.event_id.in_(chunk), sa.or_(m.c.closed.is_(None), ~m.c.closed))
        out += _rows(conn, stmt)
    return out


def event_rows(conn: Conn, event_ids: Iterable[str]) -> list[dict[str, Any]]:
    e = events
    out: list[dict[str, Any]] = []
    for chunk in _chunks(event_ids):
        out += _rows(conn, sa.select(e.c.event_id, e.c.title, e.c.neg_risk).where(e.c.event_id.in_(chunk)))
    return out


def token_rows(conn: Conn, condition_ids: Iterable[str]) -> list[dict[str, Any]]:
    """``(token_id, condition_id, outcome_index)`` of these markets."""
    t = market_tokens
    out: list[dict[str, Any]] = []
    for chunk in _chunks(condition_ids):
        stmt = sa.select(t.c.token_id, t.c.condition_id, t.c.outcome_index).where(t.c.condition_id.in_(chunk))
        out += _rows(conn, stmt)
    return out


# --- metrics ---------------------------------------------------------------------------


def oi_pairs(conn: Conn, since: datetime) -> list[dict[str, Any]]:
    """Open-interest snapshots taken since ``since``, each with the snapshot before it.

    Columns: condition_id, ts, open_interest, prev_ts, prev_oi (None without one).
    """
    m, p, q = (market_metrics_ts.alias(n) for n in ("m", "p", "q"))
    prev_ts = (
        sa.select(sa.func.max(q.c.ts))
        .where(q.c.condition_id == m.c.condition_id, q.c.ts < m.c.ts, q.c.open_interest.is_not(None))
        .scalar_subquery()
    )
    stmt = (
        sa.select(
            m.c.condition_id,
            m.c.ts,
            m.c.open_interest,
            p.c.ts.label("prev_ts"),
            p.c.open_interest.label("prev_oi"),
        )
        .select_from(m.outerjoin(p, sa.and_(p.c.condition_id == m.c.condition_id, p.c.ts == prev_ts)))
        .where(m.c.ts >= since, m.c.open_interest.is_not(None))
    )
    return _rows(conn, stmt)


def metric_prices(conn: Conn, since: datetime) -> list[dict[str, Any]]:
    """``(condition_id, ts, mid_price, last_trade_price)`` snapshots since ``since`` that hold a price."""
    m = market_metrics_ts
    stmt = sa.select(m.c.condition_id, m.c.ts, m.c.mid_price, m.c.last_trade_price).where(
        m.c.ts >= since, sa.or_(m.c.mid_price.is_not(None), m.c.last_trade_price.is_not(None))
    )
    return _rows(conn, stmt)
