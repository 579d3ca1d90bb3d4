"""Price history and coverage for the dashboard: from the archive when this build has
one, else from what the database keeps (metric snapshots, recorded trades, book state).

Every answer says where it came from (``source``) so the page can tell the user when the
archive is not there rather than showing an empty chart as if nothing happened.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from polytape.config import Settings
from polytape.store import Store
from polytape.store import web as wstore


def archive_state(settings: Settings) -> dict[str, Any]:
    """Whether an archive is readable here (``polytape.archive`` is not part of this build yet)."""
    return {"enabled": False, "reason": "the archive is not part of this build"}


def price_history(store: Store, settings: Settings, condition_id: str, since: datetime) -> dict[str, Any]:
    """Mid and last-trade price series (first outcome) and open interest since ``since``."""

    def go(conn: Any) -> dict[str, Any]:
        snaps = wstore.metrics_history(conn, condition_id, since)
        fills = wstore.trade_prices(conn, condition_id, since)
        return {"snaps": snaps, "fills": fills}

    got = store.read(go)
    mid = [[r["ts"], r["mid_price"]] for r in got["snaps"] if r["mid_price"] is not None]
    last = [[r["ts"], r["last_trade_price"]] for r in got["snaps"] if r["last_trade_price"] is not None]
    last += [[r["trade_ts"], round(float(r["price"]), 6)] for r in got["fills"]]
    last.sort(key=lambda p: p[0])
    oi = [[r["ts"], r["open_interest"]] for r in got["snaps"] if r["open_interest"] is not None]
    return {
        "condition_id": condition_id,
        "since": since,
        "source": "database",
        "archive": archive_state(settings),
        "mid": mid,
        "last_trade": last,
        "open_interest": oi,
    }


def coverage_json(store: Store, settings: Settings) -> dict[str, Any]:
    """Each tracked token: what the database knows of its book (the archive keeps the gaps)."""
    rows = store.read(wstore.token_coverage)
    now = datetime.now(UTC)
    stale = settings.book_stale_seconds
    for r in rows:
        upd = r.get("updated_at")
        r["age_seconds"] = None if upd is None else round((now - upd).total_seconds(), 1)
        r["stale"] = upd is None or (now - upd).total_seconds() > stale
        r["gaps"] = None  # only the archive's gap ledger knows them
    return {"archive": archive_state(settings), "tokens": rows, "count": len(rows)}
