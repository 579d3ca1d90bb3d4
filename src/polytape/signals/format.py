"""One-line human descriptions of stored signals (CLI tail, alert text)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

COLOURS = {
    "large_trade": "bold yellow",
    "wallet_accumulation": "magenta",
    "complement_arb": "bold green",
    "neg_risk_arb": "bold cyan",
    "price_move": "blue",
    "oi_change": "red",
}


def _usd(value: Any) -> str:
    try:
        return f"${float(value):,.0f}"
    except (TypeError, ValueError):
        return "$?"


def _q(payload: Mapping[str, Any], key: str = "question") -> str:
    text = payload.get(key) or ""
    return f" — {text}" if text else ""


def describe(row: Mapping[str, Any]) -> str:
    """``large_trade: 0xab… BUY 25,000 Yes @ 0.62 ($15,500) — Will …?`` and the like."""
    p: Mapping[str, Any] = row.get("payload") or {}
    kind = row.get("signal_type", "?")
    if kind == "large_trade":
        body = (
            f"{p.get('wallet')} {p.get('side')} {p.get('size')} {p.get('outcome')} @ {p.get('price')} "
            f"({_usd(p.get('usd_value'))}){_q(p)}"
        )
    elif kind == "wallet_accumulation":
        body = (
            f"{p.get('wallet')} {p.get('side')} {_usd(p.get('total_usd'))} of {p.get('outcome')} in "
            f"{p.get('trades')} trades over {p.get('window_minutes'):g} min{_q(p)}"
        )
    elif kind in ("complement_arb", "neg_risk_arb"):
        where = _q(p, "title") if kind == "neg_risk_arb" else _q(p)
        body = (
            f"{p.get('side')} set at {p.get('price_sum')} (edge {p.get('edge')}), "
            f"{p.get('executable_size')} shares executable, profit {_usd(p.get('expected_profit'))}{where}"
        )
    elif kind == "price_move":
        body = (
            f"{p.get('basis')} {p.get('direction')} {p.get('from_price')} → {p.get('to_price')} "
            f"({p.get('move'):+g}) within {p.get('window_minutes'):g} min{_q(p)}"
        )
    elif kind == "oi_change":
        pct = p.get("change_pct")
        body = (
            f"open interest {_usd(p.get('previous_oi'))} → {_usd(p.get('open_interest'))} "
            f"({'new' if pct is None else f'{pct:+.1f}%'}){_q(p)}"
        )
    else:
        body = str(dict(p))
    market = row.get("condition_id") or ""
    return f"{kind}: {body}" + (f" [{market}]" if market else "")


def as_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored signal as plain JSON (times as ISO text)."""
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in row.items()
        if k
        in ("id", "dedupe_key", "signal_type", "condition_id", "token_id", "detected_at", "score", "payload")
    }
