"""``/api/status``: what ``polytape status --json`` says, read through the dashboard's store.

The same judgement (:func:`polytape.status.assess`) and the same JSON
(:func:`polytape.status.status_json`), plus the runner's heartbeat and the archive's
state with an ``enabled`` flag and, when off or empty, the ``reason``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from polytape.config import Settings
from polytape.status import StatusReport, assess, status_json
from polytape.store import Store
from polytape.store.status import status_snapshot
from polytape.web.history import archive_state


def status_payload(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """``polytape status --json`` for this database, with the runner and the archive's state."""
    now = now or datetime.now(UTC)
    snap = status_snapshot(
        store,
        now,
        book_stale_before=now - timedelta(seconds=settings.book_stale_seconds),
        since=now - timedelta(hours=1),
        worker_ttl=settings.worker_lease_seconds,
    )
    archive = archive_state(settings, now)
    if archive.get("exists"):
        snap["archive"] = {k: v for k, v in archive.items() if k not in ("enabled", "reason")}
    out = status_json(StatusReport(assess(snap, settings, now), snap))
    out["archive"] = archive
    out["runner"] = snap.get("runner")
    out["now"] = now
    return out
