"""``/api/status``: the health ``polytape status`` prints, as one JSON object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from polytape.config import Settings
from polytape.redact import redact_urls
from polytape.status import assess
from polytape.store import Store
from polytape.store.status import status_snapshot
from polytape.web.history import archive_state


def status_json(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Jobs with their age against their cadence, the feed, the runner, alerts, the archive."""
    now = now or datetime.now(UTC)
    snap = status_snapshot(
        store,
        now,
        book_stale_before=now - timedelta(seconds=settings.book_stale_seconds),
        since=now - timedelta(hours=1),
    )
    health = assess(snap, settings, now)
    return {
        "healthy": health.ok,
        "problems": health.problems,
        "now": now,
        "jobs": [
            {
                "name": j.name,
                "status": j.status,
                "age_seconds": None if j.age is None else round(j.age.total_seconds(), 1),
                "cadence_seconds": j.cadence,
                "late": j.late,
                "rows": j.rows,
                "error": redact_urls(j.error) if j.error else None,
            }
            for j in health.jobs
        ],
        "runner": snap.get("runner"),
        "ws_feed": snap.get("ws_feed"),
        "counts": {
            k: snap.get(k)
            for k in ("trades", "newest_trade", "tracked_markets", "books", "stale_books", "signals_recent")
        },
        "rejected_recent": snap.get("rejected_recent") or {},
        "alerts": snap.get("alerts") or [],
        "workers": snap.get("workers"),
        "archive": archive_state(settings),
    }
