"""Turning store rows and live books into the rules' plain inputs.

Pure except :func:`load_structure`, which takes an open connection from the
engine's ``store.read``. Nothing here decides whether a signal fires.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from polytape.signals.model import (
    BinaryMarket,
    BookView,
    NegRiskEvent,
    OiSnapshot,
    PricePoint,
    PriceSeries,
    Prior,
    TradeIn,
    clean,
)
from polytape.store import signals as sstore


@dataclass
class MarketInfo:
    """What the book rules need to know about a market."""

    condition_id: str
    question: str | None
    event_id: str | None
    neg_risk: bool
    token_ids: list[str]  # by outcome index; the first is YES


@dataclass
class Structure:
    """Markets, their tokens and the neg-risk events they belong to."""

    markets: dict[str, MarketInfo] = field(default_factory=dict)
    token_market: dict[str, str] = field(default_factory=dict)
    neg_risk_events: dict[str, list[str]] = field(default_factory=dict)  # event -> open markets
    event_titles: dict[str, str | None] = field(default_factory=dict)

    def add_market(self, info: MarketInfo) -> None:
        self.markets[info.condition_id] = info
        for tid in info.token_ids:
            self.token_market[tid] = info.condition_id


def _token_ids(row: Mapping[str, Any], tokens: Mapping[str, list[tuple[int, str]]]) -> list[str]:
    known = sorted(tokens.get(row["condition_id"], []))
    if known:
        return [tid for _, tid in known]
    raw = row.get("clob_token_ids")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    return [str(t) for t in raw] if isinstance(raw, list) else []


def load_structure(conn: Any, condition_ids: Iterable[str]) -> Structure:
    """Markets of ``condition_ids`` and, for neg-risk ones, every open market of their event."""
    rows = sstore.market_rows(conn, condition_ids)
    event_ids = {r["event_id"] for r in rows if r["event_id"]}
    events = {e["event_id"]: e for e in sstore.event_rows(conn, event_ids)}

    def is_neg_risk(row: Mapping[str, Any]) -> bool:
        ev = events.get(row["event_id"] or "")
        return bool(row["neg_risk"]) or bool(ev and ev["neg_risk"])

    nr_events = {r["event_id"] for r in rows if r["event_id"] and is_neg_risk(r)}
    siblings = sstore.open_markets_of_events(conn, nr_events)
    all_rows = {r["condition_id"]: r for r in [*rows, *siblings]}
    tokens: dict[str, list[tuple[int, str]]] = {}
    for t in sstore.token_rows(conn, all_rows):
        tokens.setdefault(t["condition_id"], []).append((t["outcome_index"] or 0, t["token_id"]))
    out = Structure()
    for cid, row in all_rows.items():
        out.add_market(
            MarketInfo(cid, row["question"], row["event_id"], is_neg_risk(row), _token_ids(row, tokens))
        )
    for row in sorted(siblings, key=lambda r: r["condition_id"]):  # legs in a stable order
        out.neg_risk_events.setdefault(row["event_id"], []).append(row["condition_id"])
    out.event_titles = {eid: events[eid]["title"] if eid in events else None for eid in nr_events}
    return out


# --- books -----------------------------------------------------------------------------


def view_from_levels(
    token_id: str,
    condition_id: str | None,
    bids: Sequence[tuple[float, float]],
    asks: Sequence[tuple[float, float]],
    updated_at: datetime,
) -> BookView:
    return BookView(token_id, condition_id, tuple(bids), tuple(asks), updated_at)


def view_from_top(row: Mapping[str, Any]) -> BookView:
    """A top-of-book view from an ``orderbooks`` row (sizes unknown: 0)."""
    bids = ((float(row["best_bid"]), 0.0),) if row["best_bid"] is not None else ()
    asks = ((float(row["best_ask"]), 0.0),) if row["best_ask"] is not None else ()
    return BookView(row["token_id"], row["condition_id"], bids, asks, row["updated_at"])


def arb_possible(tops: Sequence[BookView | None], min_edge: float) -> bool:
    """Cheap pre-check on best prices only: could these books hold an arb at all?"""
    if len(tops) < 2 or any(b is None for b in tops):
        return False
    asks = [b.best_ask for b in tops if b is not None]
    bids = [b.best_bid for b in tops if b is not None]
    if all(a is not None for a in asks) and clean(1 - sum(a for a in asks if a is not None)) > min_edge:
        return True
    if all(b is not None for b in bids):
        return clean(sum(b for b in bids if b is not None) - 1) > min_edge
    return False


def book_situations(
    structure: Structure, books: Mapping[str, BookView], condition_ids: Iterable[str]
) -> tuple[list[BinaryMarket], list[NegRiskEvent]]:
    """The binary markets among ``condition_ids`` and the neg-risk events they belong to."""
    binaries: list[BinaryMarket] = []
    event_ids: set[str] = set()
    for cid in dict.fromkeys(condition_ids):
        info = structure.markets.get(cid)
        if info is None or len(info.token_ids) != 2:
            continue
        yes, no = (books.get(t) for t in info.token_ids)
        binaries.append(BinaryMarket(cid, info.question, yes, no))
        if info.neg_risk and info.event_id in structure.neg_risk_events:
            event_ids.add(info.event_id)
    events = []
    for eid in sorted(event_ids):
        legs = []
        for cid in structure.neg_risk_events[eid]:
            info = structure.markets[cid]
            yes_book = books.get(info.token_ids[0]) if info.token_ids else None
            legs.append((cid, info.question, yes_book))
        events.append(NegRiskEvent(eid, structure.event_titles.get(eid), legs))
    return binaries, events


def arb_tokens(binaries: Iterable[BinaryMarket], events: Iterable[NegRiskEvent], min_edge: float) -> set[str]:
    """Tokens of the situations whose best prices could hold an arb (their levels are needed)."""
    out: set[str] = set()
    for m in binaries:
        if arb_possible([m.yes, m.no], min_edge):
            out.update(b.token_id for b in (m.yes, m.no) if b is not None)
    for ev in events:
        books = [b for _, _, b in ev.legs]
        if arb_possible(books, min_edge):
            out.update(b.token_id for b in books if b is not None)
    return out


# --- trades, series, priors ----------------------------------------------------------------


def trade_in(row: Mapping[str, Any]) -> TradeIn:
    """A ``trades`` row (with ``question``) as the rules see it."""
    return TradeIn(
        id=int(row["id"]),
        dedupe_key=row["dedupe_key"],
        transaction_hash=row["transaction_hash"],
        wallet=row["wallet"],
        condition_id=row["condition_id"],
        token_id=row["token_id"],
        side=row["side"],
        outcome=row["outcome"],
        outcome_index=row["outcome_index"],
        size=float(row["size"]),
        price=float(row["price"]),
        usd_value=float(row["usd_value"]),
        trade_ts=row["trade_ts"],
        question=row.get("question"),
    )


def oi_series(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[OiSnapshot]]:
    """The newest snapshot of each market with the one before it."""
    newest: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        if r["prev_ts"] is not None and (
            r["condition_id"] not in newest or r["ts"] > newest[r["condition_id"]]["ts"]
        ):
            newest[r["condition_id"]] = r
    return {
        cid: [OiSnapshot(r["prev_ts"], float(r["prev_oi"])), OiSnapshot(r["ts"], float(r["open_interest"]))]
        for cid, r in newest.items()
    }


def price_series(
    trade_rows: Iterable[Mapping[str, Any]],
    metric_rows: Iterable[Mapping[str, Any]],
    mids: Mapping[str, Sequence[PricePoint]],
    questions: Mapping[str, str | None],
) -> list[PriceSeries]:
    """``last_trade`` series (stored trades' extremes and snapshots) and ``mid`` series
    (snapshots and books)."""
    last: dict[str, list[PricePoint]] = {}
    mid: dict[str, list[PricePoint]] = {cid: list(points) for cid, points in mids.items()}
    for r in trade_rows:  # already first-outcome prices
        last.setdefault(r["condition_id"], []).append(PricePoint(r["trade_ts"], float(r["price"])))
    for r in metric_rows:
        if r["last_trade_price"] is not None:
            last.setdefault(r["condition_id"], []).append(PricePoint(r["ts"], float(r["last_trade_price"])))
        if r["mid_price"] is not None:
            mid.setdefault(r["condition_id"], []).append(PricePoint(r["ts"], float(r["mid_price"])))
    out = [PriceSeries(cid, "last_trade", pts, questions.get(cid)) for cid, pts in last.items()]
    out += [PriceSeries(cid, "mid", pts, questions.get(cid)) for cid, pts in mid.items()]
    return out


def priors_from(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Prior]:
    """The newest stored signal per (type, subject)."""
    out: dict[tuple[str, str], Prior] = {}
    for r in rows:
        payload = r["payload"] if isinstance(r["payload"], dict) else {}
        subject = payload.get("subject")
        if not isinstance(subject, str):
            continue
        key = (str(r["signal_type"]), subject)
        if key not in out or out[key].detected_at <= r["detected_at"]:
            out[key] = Prior(r["detected_at"], payload)
    return out
