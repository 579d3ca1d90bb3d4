"""The job_runs audit trail and rejected payloads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from polytape.store.core import Store, Tx
from polytape.store.schema import job_runs, rejected_payloads

RAW_LIMIT = 64_000  # keep a sample of bad input, not a flood


def begin_job_run(store: Store, job_name: str, started_at: datetime, worker_id: str | None = None) -> int:
    """Open a ``running`` row (of the worker ``worker_id``); returns its id."""

    def _do(tx: Tx) -> int:
        stmt = sa.insert(job_runs).values(
            job_name=job_name, started_at=started_at, status="running", rows_written=0, worker_id=worker_id
        )
        return int(tx.execute(stmt.returning(job_runs.c.id)).scalar_one())

    return store.write(_do)


def finish_job_run(
    store: Store,
    run_id: int,
    *,
    finished_at: datetime,
    status: str,
    rows_written: int,
    error: str | None,
    details: dict[str, Any],
) -> None:
    stmt = (
        sa.update(job_runs)
        .where(job_runs.c.id == run_id)
        .values(
            finished_at=finished_at,
            status=status,
            rows_written=rows_written,
            error=error,
            details=details,
        )
    )
    store.write(lambda tx: tx.execute(stmt))


def last_started(store: Store, job_name: str) -> datetime | None:
    """When the newest run of ``job_name`` started (by any worker), if it ever ran."""
    stmt = sa.select(sa.func.max(job_runs.c.started_at)).where(job_runs.c.job_name == job_name)
    when: datetime | None = store.read(lambda c: c.execute(stmt).scalar())
    return when


def rejected_row(source: str, reason: str, raw: Any, received_at: datetime) -> dict[str, Any]:
    """A ``rejected_payloads`` row; ``raw`` is kept as text, truncated if huge."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw
    else:
        try:
            text = json.dumps(raw, default=str)
        except (TypeError, ValueError):
            text = repr(raw)
    return {
        "source": source,
        "received_at": received_at,
        "reason": reason[:2000],
        "raw": text[:RAW_LIMIT],
    }


def latest_runs(store: Store) -> list[dict[str, Any]]:
    """The newest run of each job."""
    newest = (
        sa.select(job_runs.c.job_name, sa.func.max(job_runs.c.id).label("id"))
        .group_by(job_runs.c.job_name)
        .subquery()
    )
    stmt = sa.select(job_runs).join(newest, job_runs.c.id == newest.c.id).order_by(job_runs.c.job_name)
    return store.fetch_all(stmt)


def rejected_counts(store: Store, since: datetime) -> dict[str, int]:
    t = rejected_payloads
    stmt = sa.select(t.c.source, sa.func.count()).where(t.c.received_at >= since).group_by(t.c.source)
    return store.read(lambda c: {str(s): int(n) for s, n in c.execute(stmt)})
