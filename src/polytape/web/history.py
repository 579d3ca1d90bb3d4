"""Price history and coverage for the dashboard: from the archive (``polytape.archive``)
when it is enabled and holds data, else from what the database keeps (metric snapshots,
recorded trades, the stored books).

Every answer says where it came from (``source``, ``archive``) so the page tells the user
when the archive is off or empty rather than showing an empty chart as if nothing happened.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from polytape.config import Settings
from polytape.store import Store
from polytape.store import web as wstore

MAX_POINTS = 2000  # per series: enough for a chart, bounded for a week of a busy book
US = 1_000_000


def _us(when: datetime) -> int:
    return int(when.timestamp() * US)


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, UTC)


# The archive summary walks the archive's files: pages polling it share one for a while.
SUMMARY_TTL_SECONDS = 15.0
_summaries: dict[str, tuple[float, dict[str, Any]]] = {}


def archive_state(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Whether the archive is on and readable here, with what ``polytape status`` says of it."""
    if not settings.archive_enabled:
        return {"enabled": False, "reason": "POLYTAPE_ARCHIVE_ENABLED is false"}
    from polytape.archive.report import summary

    key = str(settings.archive_dir)
    cached = _summaries.get(key)
    if cached is not None and time.monotonic() - cached[0] < SUMMARY_TTL_SECONDS and cached[1].get("exists"):
        info = cached[1]
    else:
        info = summary(settings.archive_dir, _us(now or datetime.now(UTC)))
        _summaries[key] = (time.monotonic(), info)
    if not info.get("exists"):
        return {**info, "enabled": False, "reason": f"nothing recorded yet in {settings.archive_dir}"}
    return {**info, "enabled": True}


def _thin(points: list[list[Any]]) -> list[list[Any]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    kept = [points[int(i * step)] for i in range(MAX_POINTS - 1)]
    return [*kept, points[-1]]


def price_history(store: Store, settings: Settings, condition_id: str, since: datetime) -> dict[str, Any]:
    """Mid and last-trade price series (first outcome) and open interest since ``since``."""

    def go(conn: Any) -> dict[str, Any]:
        return {
            "snaps": wstore.metrics_history(conn, condition_id, since),
            "fills": wstore.trade_prices(conn, condition_id, since),
            "market": wstore.market_detail(conn, condition_id),
        }

    got = store.read(go)
    now = datetime.now(UTC)
    archive = archive_state(settings, now)
    oi = [[r["ts"], r["open_interest"]] for r in got["snaps"] if r["open_interest"] is not None]
    tokens = [t["token_id"] for t in (got["market"] or {}).get("tokens", [])]
    if archive["enabled"] and tokens:
        mid, last = _archive_prices(settings, condition_id, tokens, since, now)
        source = "archive"
    else:
        mid = [[r["ts"], r["mid_price"]] for r in got["snaps"] if r["mid_price"] is not None]
        last = [[r["ts"], r["last_trade_price"]] for r in got["snaps"] if r["last_trade_price"] is not None]
        source = "database"
    if not last:  # the archive records trades it heard from now on; the database has the rest
        last = [[r["trade_ts"], round(float(r["price"]), 6)] for r in got["fills"]]
    last.sort(key=lambda p: p[0])
    return {
        "condition_id": condition_id,
        "since": since,
        "source": source,
        "archive": archive,
        "mid": _thin(mid),
        "last_trade": _thin(last),
        "open_interest": oi,
    }


def _archive_prices(
    settings: Settings, condition_id: str, tokens: list[str], since: datetime, now: datetime
) -> tuple[list[list[Any]], list[list[Any]]]:
    """The first outcome's mid (from ``quotes``) and every archived trade, as first-outcome prices."""
    from polytape.archive import open as open_archive

    archive = open_archive(settings.archive_dir)
    quotes = archive.quotes(_us(since), _us(now), tokens=tokens[:1]).to_pylist()
    mid = [
        [_at(q["timestamp"]), round((q["bid_price"] + q["ask_price"]) / 2, 6)]
        for q in quotes
        if q.get("bid_price") is not None and q.get("ask_price") is not None
    ]
    second = tokens[1] if len(tokens) > 1 else None
    last = []
    for t in archive.trades(_us(since), _us(now), markets=[condition_id]).to_pylist():
        price = t.get("price")
        if price is None:
            continue
        yes = 1 - price if t.get("token_id") == second else price
        last.append([_at(t["timestamp"]), round(float(yes), 6)])
    return mid, last


def coverage_json(store: Store, settings: Settings, hours: float = 24.0) -> dict[str, Any]:
    """Each tracked token over the last ``hours``: its recorded share and gaps (with reasons)
    from the archive, and what the database knows of its book."""
    rows = store.read(wstore.token_coverage)
    now = datetime.now(UTC)
    stale = settings.book_stale_seconds
    archive = archive_state(settings, now)
    by_token: dict[str, Any] = {}
    if archive["enabled"] and rows:
        from polytape.archive.report import coverage

        until = _us(now)
        since = until - int(hours * 3600 * US)
        by_token = {
            c.token_id: c for c in coverage(settings.archive_dir, since, until, [r["token_id"] for r in rows])
        }
    for r in rows:
        upd = r.get("updated_at")
        r["age_seconds"] = None if upd is None else round((now - upd).total_seconds(), 1)
        r["stale"] = upd is None or (now - upd).total_seconds() > stale
        cov = by_token.get(r["token_id"])
        if cov is None:
            r["recorded_share"], r["gaps"] = None, None
            continue
        r["recorded_share"] = round(cov.share, 4)
        r["recorded_from"] = _at(cov.first) if cov.rows else None
        r["recorded_rows"] = cov.rows
        r["gaps"] = [
            {
                "start": _at(g["start"]),
                "end": None if g.get("end") is None else _at(g["end"]),
                "reason": g.get("reason"),
            }
            for g in cov.gaps
        ]
    return {"archive": archive, "hours": hours, "tokens": rows, "count": len(rows)}
