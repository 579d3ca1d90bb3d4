"""The signal rules: pure functions from stored facts to :class:`Signal` records.

Each rule takes plain inputs, a :class:`RuleConfig` (the ``signal_*`` settings)
and ``now``; none reads the clock, the store or the network. Every signal
carries a ``dedupe_key`` (a trade signal: the trade's key; the others: type,
market and a time bucket, plus the coarse state that makes a change "material")
and a cooldown ``subject``; :func:`apply_cooldown` keeps a standing condition to
one signal per cooldown unless it materially changes (see
:func:`materially_changed`). Scores are USD (large_trade and wallet_accumulation:
the money traded; arbs: the expected profit of the executable size; oi_change:
the change) except price_move, whose score is the move in points.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from polytape.signals.model import (
    BOOK_TYPES,
    COMPLEMENT_ARB,
    LARGE_TRADE,
    NEG_RISK_ARB,
    OI_CHANGE,
    PRICE_MOVE,
    WALLET_ACCUMULATION,
    BinaryMarket,
    BookView,
    Level,
    NegRiskEvent,
    OiSnapshot,
    PriceSeries,
    Prior,
    RuleConfig,
    Signal,
    TradeIn,
    bucket,
    clean,
)

EDGE_STEP_FLOOR = 0.001  # an edge change smaller than this is never material
TX_HASHES_KEPT = 20


def _iso(when: datetime) -> str:
    return when.isoformat()


# --- trades ---------------------------------------------------------------------


def large_trade(trades: Iterable[TradeIn], cfg: RuleConfig, now: datetime) -> list[Signal]:
    """``large_trade``: one taker trade worth at least ``signal_large_trade_usd``.

    Payload: wallet, side, outcome, size, price, usd_value, market question,
    transaction hash and trade time. Keyed by the trade's own dedupe key, so a
    trade is signalled once however often it is seen; no cooldown applies. Trades
    older than the config's ``trade_horizon`` (a backfill) are history, not news.
    """
    out: list[Signal] = []
    for t in trades:
        if clean(t.usd_value) < cfg.large_trade_usd or t.trade_ts < now - cfg.trade_horizon:
            continue
        payload = {
            "wallet": t.wallet,
            "side": t.side,
            "outcome": t.outcome,
            "outcome_index": t.outcome_index,
            "size": t.size,
            "price": t.price,
            "usd_value": t.usd_value,
            "question": t.question,
            "transaction_hash": t.transaction_hash,
            "trade_ts": _iso(t.trade_ts),
            "trade_dedupe_key": t.dedupe_key,
        }
        key = f"{LARGE_TRADE}:{t.dedupe_key}"
        out.append(Signal(LARGE_TRADE, t.condition_id, t.token_id, now, t.usd_value, payload, key, key))
    return out


def wallet_accumulation(
    trades: Iterable[TradeIn], new_ids: Collection[int] | None, cfg: RuleConfig, now: datetime
) -> list[Signal]:
    """``wallet_accumulation``: one wallet's trades of one outcome of one market, in one
    direction (BUY or SELL), adding up to ``signal_accumulation_usd`` or more within
    ``signal_accumulation_window_minutes``.

    ``trades`` are every stored trade of the wallets concerned that may share a window
    with a new one; only windows ending at a new trade (``new_ids``; None: all) count,
    so old history is not re-signalled. The window is anchored at that trade, not at
    ``now``, so a late pass sees the same accumulations. One signal per group: the
    newest qualifying window. Its ``level`` (total // threshold) is the material state.
    """
    groups: dict[tuple[str, str, str, str], list[TradeIn]] = {}
    for t in trades:
        if t.wallet:
            groups.setdefault((t.wallet, t.condition_id, t.token_id or "", t.side or ""), []).append(t)
    out: list[Signal] = []
    for (wallet, cid, token_id, side), rows in groups.items():
        rows.sort(key=lambda r: (r.trade_ts, r.id))
        window = _newest_window(rows, new_ids, cfg)
        if window is not None:
            out.append(_accumulation_signal(wallet, cid, token_id, side, window, cfg, now))
    return out


def _newest_window(
    rows: Sequence[TradeIn], new_ids: Collection[int] | None, cfg: RuleConfig
) -> Sequence[TradeIn] | None:
    """The newest window (ending at a new trade) whose total reaches the threshold."""
    found: Sequence[TradeIn] | None = None
    left, total = 0, 0.0
    for right, t in enumerate(rows):
        total += t.usd_value
        while rows[left].trade_ts < t.trade_ts - cfg.accumulation_window:
            total -= rows[left].usd_value
            left += 1
        if (new_ids is None or t.id in new_ids) and clean(total) >= cfg.accumulation_usd:
            found = rows[left : right + 1]
    return found


def _accumulation_signal(
    wallet: str, cid: str, token_id: str, side: str, rows: Sequence[TradeIn], cfg: RuleConfig, now: datetime
) -> Signal:
    total = clean(math.fsum(r.usd_value for r in rows), 6)
    size = clean(math.fsum(r.size for r in rows), 6)
    level = int(total // cfg.accumulation_usd)
    first, last = rows[0], rows[-1]
    payload = {
        "wallet": wallet,
        "side": side,
        "outcome": last.outcome,
        "total_usd": total,
        "total_size": size,
        "avg_price": clean(total / size, 6) if size else None,
        "trades": len(rows),
        "first_trade_ts": _iso(first.trade_ts),
        "last_trade_ts": _iso(last.trade_ts),
        "window_minutes": cfg.accumulation_window.total_seconds() / 60,
        "level": level,
        "question": last.question,
        "transaction_hashes": list(dict.fromkeys(r.transaction_hash for r in rows if r.transaction_hash))[
            :TX_HASHES_KEPT
        ],
    }
    subject = f"{cid}:{wallet}:{token_id}:{side}"
    key = f"{WALLET_ACCUMULATION}:{subject}:{bucket(first.trade_ts, cfg.accumulation_window)}:{level}"
    return Signal(WALLET_ACCUMULATION, cid, token_id or None, now, total, payload, key, subject)


# --- books ------------------------------------------------------------------------


def walk_legs(ladders: Sequence[Sequence[Level]], *, buy: bool, min_edge: float) -> tuple[float, float]:
    """Shares executable on every leg at once while each marginal set still beats
    1 by more than ``min_edge``; returns ``(size, total price paid or received)``."""
    idx = [0] * len(ladders)
    left = [ladder[0][1] for ladder in ladders]
    size = value = 0.0
    while True:
        price = sum(ladder[i][0] for ladder, i in zip(ladders, idx, strict=True))
        edge = clean(1 - price) if buy else clean(price - 1)
        if edge <= min_edge:
            break
        take = min(left)
        size += take
        value += take * price
        for n, ladder in enumerate(ladders):
            left[n] -= take
            if left[n] <= 1e-12:
                idx[n] += 1
                if idx[n] >= len(ladder):
                    return size, value
                left[n] = ladder[idx[n]][1]
    return size, value


def _arb_terms(ladders: Sequence[Sequence[Level]], *, buy: bool, cfg: RuleConfig) -> dict[str, Any] | None:
    """Edge, size at the best prices and the executable size, or None when no arb."""
    if any(not ladder for ladder in ladders):
        return None
    top = clean(sum(ladder[0][0] for ladder in ladders))
    edge = clean(1 - top) if buy else clean(top - 1)
    if edge <= cfg.arb_min_edge:
        return None
    size, value = walk_legs(ladders, buy=buy, min_edge=cfg.arb_min_edge)
    profit = size - value if buy else value - size
    return {
        "side": "buy" if buy else "sell",
        "edge": edge,
        "price_sum": top,
        "size_at_best": min(ladder[0][1] for ladder in ladders),
        "executable_size": clean(size, 6),
        "cost" if buy else "proceeds": clean(value, 6),
        "expected_profit": clean(profit, 6),
    }


def _ladders(books: Sequence[BookView], buy: bool) -> list[Sequence[Level]]:
    return [tuple(lv for lv in (b.asks if buy else b.bids) if lv[1] > 0) for b in books]


def _arb_state_key(terms: Mapping[str, Any], cfg: RuleConfig) -> str:
    """The coarse state a material change must move: side, edge step, size octave."""
    step = max(cfg.arb_min_edge, EDGE_STEP_FLOOR)
    octave = math.floor(math.log2(max(float(terms["executable_size"]), 1e-9)))
    return f"{terms['side']}:{math.floor(terms['edge'] / step)}:{octave}"


def _find_arb(books: Sequence[BookView], cfg: RuleConfig) -> dict[str, Any] | None:
    for buy in (True, False):
        terms = _arb_terms(_ladders(books, buy), buy=buy, cfg=cfg)
        if terms is not None:
            return terms
    return None


def complement_arb(markets: Iterable[BinaryMarket], cfg: RuleConfig, now: datetime) -> list[Signal]:
    """``complement_arb``: on a binary market, best ask YES + best ask NO below 1 by more
    than ``signal_arb_min_edge`` (buy both: one pays out 1), or best bids above 1 by more
    than it (sell both).

    Both books must be evidence: updated within ``signal_book_max_age_seconds`` and not
    crossed. Payload: side, edge, the two prices, ``size_at_best`` (shares available at
    those prices), ``executable_size`` and cost/proceeds walking deeper levels while
    each step still beats the edge, and the expected profit (the score).
    """
    out: list[Signal] = []
    for m in markets:
        if m.yes is None or m.no is None:
            continue
        books = (m.yes, m.no)
        if not all(b.is_evidence(now, cfg.book_max_age_seconds) for b in books):
            continue
        terms = _find_arb(books, cfg)
        if terms is None:
            continue
        buy = terms["side"] == "buy"
        payload = {
            **terms,
            "question": m.question,
            "yes_token_id": m.yes.token_id,
            "no_token_id": m.no.token_id,
            "yes_price": m.yes.best_ask if buy else m.yes.best_bid,
            "no_price": m.no.best_ask if buy else m.no.best_bid,
            "book_ages_s": [round(b.age(now), 3) for b in books],
        }
        key = f"{COMPLEMENT_ARB}:{m.condition_id}:{bucket(now, cfg.cooldown)}:{_arb_state_key(terms, cfg)}"
        score = float(terms["expected_profit"])
        out.append(Signal(COMPLEMENT_ARB, m.condition_id, None, now, score, payload, key, m.condition_id))
    return out


def neg_risk_arb(events: Iterable[NegRiskEvent], cfg: RuleConfig, now: datetime) -> list[Signal]:
    """``neg_risk_arb``: in a negative-risk event (exactly one outcome wins), the sum of
    the best YES asks of every outcome market below 1 by more than ``signal_arb_min_edge``
    (buy every YES), or the sum of best YES bids above 1 by more than it (sell every YES).

    Every outcome market needs a YES book that is evidence (fresh, not crossed); one
    missing or stale book means no signal. Payload: per-leg prices and sizes, the
    edge, ``size_at_best``, ``executable_size`` and the expected profit (the score).
    The row's ``condition_id`` is empty: the subject is the event.
    """
    out: list[Signal] = []
    for ev in events:
        if len(ev.legs) < 2 or any(book is None for _, _, book in ev.legs):
            continue
        books = [book for _, _, book in ev.legs if book is not None]
        if not all(b.is_evidence(now, cfg.book_max_age_seconds) for b in books):
            continue
        terms = _find_arb(books, cfg)
        if terms is None:
            continue
        buy = terms["side"] == "buy"
        legs = [
            {
                "condition_id": cid,
                "question": question,
                "token_id": book.token_id,
                "price": book.best_ask if buy else book.best_bid,
                "size": (book.asks if buy else book.bids)[0][1],
                "age_s": round(book.age(now), 3),
            }
            for (cid, question, book) in ev.legs
            if book is not None
        ]
        payload = {**terms, "event_id": ev.event_id, "title": ev.title, "legs": legs}
        subject = f"event:{ev.event_id}"
        key = f"{NEG_RISK_ARB}:{ev.event_id}:{bucket(now, cfg.cooldown)}:{_arb_state_key(terms, cfg)}"
        out.append(
            Signal(NEG_RISK_ARB, None, None, now, float(terms["expected_profit"]), payload, key, subject)
        )
    return out


# --- series -------------------------------------------------------------------------


def price_move(series: Iterable[PriceSeries], cfg: RuleConfig, now: datetime) -> list[Signal]:
    """``price_move``: a market's mid or last trade price (first outcome) now at least
    ``signal_move_points`` away from a price it had within ``signal_move_window_minutes``.

    The reference is the window's observation farthest from the newest one, so a move
    that happened inside the window is caught even if it started earlier in it. The
    key holds the direction and the newest price in ``signal_move_points`` steps.
    """
    out: list[Signal] = []
    start = now - cfg.move_window
    for s in series:
        points = sorted((p for p in s.points if p.ts >= start), key=lambda p: p.ts)
        if len(points) < 2:
            continue
        latest = points[-1]
        ref = max(points[:-1], key=lambda p: abs(p.price - latest.price))
        move = clean(latest.price - ref.price)
        if abs(move) < clean(cfg.move_points):
            continue
        direction = "up" if move > 0 else "down"
        payload = {
            "basis": s.basis,
            "from_price": ref.price,
            "to_price": latest.price,
            "move": move,
            "direction": direction,
            "from_ts": _iso(ref.ts),
            "to_ts": _iso(latest.ts),
            "window_minutes": cfg.move_window.total_seconds() / 60,
            "question": s.question,
        }
        level = math.floor(clean(latest.price / cfg.move_points))
        key = f"{PRICE_MOVE}:{s.condition_id}:{direction}:{bucket(latest.ts, cfg.move_window)}:{level}"
        out.append(Signal(PRICE_MOVE, s.condition_id, None, now, abs(move), payload, key, s.condition_id))
    return out


def oi_change(
    snapshots: Mapping[str, Sequence[OiSnapshot]],
    questions: Mapping[str, str | None],
    cfg: RuleConfig,
    now: datetime,
) -> list[Signal]:
    """``oi_change``: open interest changing between a market's two newest snapshots by
    at least ``signal_oi_change_pct`` percent and ``signal_oi_change_usd`` USD.

    Keyed by the newer snapshot's time, so one pair of snapshots is one signal.
    ``change_pct`` is None when the previous value was 0.
    """
    out: list[Signal] = []
    for cid, snaps in snapshots.items():
        if len(snaps) < 2:
            continue
        prev, new = sorted(snaps, key=lambda s: s.ts)[-2:]
        change = clean(new.open_interest - prev.open_interest, 6)
        pct = change / prev.open_interest * 100 if prev.open_interest > 0 else math.inf
        if abs(change) < cfg.oi_change_usd or clean(abs(pct)) < cfg.oi_change_pct or change == 0:
            continue
        payload = {
            "previous_oi": prev.open_interest,
            "open_interest": new.open_interest,
            "change_usd": change,
            "change_pct": clean(pct, 4) if math.isfinite(pct) else None,
            "previous_ts": _iso(prev.ts),
            "ts": _iso(new.ts),
            "question": questions.get(cid),
        }
        key = f"{OI_CHANGE}:{cid}:{_iso(new.ts)}"
        out.append(Signal(OI_CHANGE, cid, None, now, abs(change), payload, key, cid))
    return out


# --- cooldown -------------------------------------------------------------------------


def materially_changed(
    signal_type: str, before: Mapping[str, Any], after: Mapping[str, Any], cfg: RuleConfig
) -> bool:
    """Whether a condition differs enough from its last signal to be signalled again
    inside the cooldown.

    - arbs: the side flipped, the edge moved by ``signal_arb_min_edge`` (at least
      0.001), or the executable size doubled or halved;
    - price_move: the direction flipped, or the price moved another
      ``signal_move_points`` since the last signal;
    - oi_change: a newer pair of snapshots;
    - wallet_accumulation: the total crossed another multiple of the threshold.
    A prior lacking the fields compared counts as changed.
    """
    try:
        if signal_type in BOOK_TYPES:
            if before["side"] != after["side"]:
                return True
            if abs(after["edge"] - before["edge"]) >= max(cfg.arb_min_edge, EDGE_STEP_FLOOR):
                return True
            small, big = sorted((float(before["executable_size"]), float(after["executable_size"])))
            return big >= 2 * small
        if signal_type == PRICE_MOVE:
            return bool(
                before["direction"] != after["direction"]
                or clean(abs(after["to_price"] - before["to_price"])) >= clean(cfg.move_points)
            )
        if signal_type == OI_CHANGE:
            return bool(before["ts"] != after["ts"])
        if signal_type == WALLET_ACCUMULATION:
            return int(after["level"]) > int(before["level"])
    except (KeyError, TypeError, ValueError):
        return True
    return True


def apply_cooldown(
    candidates: Iterable[Signal], priors: Mapping[tuple[str, str], Prior], cfg: RuleConfig, now: datetime
) -> list[Signal]:
    """Keep the signals worth writing.

    Per (type, subject) only the strongest candidate of a pass survives; it is dropped
    when the same (type, subject) was signalled less than ``signal_cooldown_minutes``
    ago and has not :func:`materially_changed`. Large trades are each their own event
    and pass untouched (their key makes them unique).
    """
    strongest: dict[tuple[str, str], Signal] = {}
    out: list[Signal] = []
    for sig in candidates:
        if sig.signal_type == LARGE_TRADE:
            out.append(sig)
            continue
        k = (sig.signal_type, sig.subject)
        if k not in strongest or sig.score > strongest[k].score:
            strongest[k] = sig
    for k, sig in strongest.items():
        prior = priors.get(k)
        cooling = prior is not None and now - prior.detected_at < cfg.cooldown
        if cooling and prior is not None and not materially_changed(k[0], prior.payload, sig.payload, cfg):
            continue
        out.append(sig)
    return out
