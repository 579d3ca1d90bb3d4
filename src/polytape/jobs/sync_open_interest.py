"""``sync-open-interest``: one ``market_metrics_ts`` snapshot of open interest per tracked market.

Every 5 minutes (seed): ensure a tracked universe exists, ask ``/oi`` for its condition ids
in batches of ``oi_batch_size``, and upsert one row per market at the run's snapshot time
(UTC, whole seconds, the same for every market of the run). A market missing from the
answer (or whose batch failed) is a gap counted in the run's details, never stored as 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from polytape import metrics
from polytape.errors import ApiError, PayloadError
from polytape.ingest.rejects import bad_answer, cap_and_log
from polytape.jobs.base import JobContext, JobResult
from polytape.jobs.refresh_universe import ensure_universe
from polytape.normalize import Rejected
from polytape.normalize.open_interest import REJECT_SOURCE, OpenInterestBatch, normalize_open_interest
from polytape.store.core import Tx
from polytape.store.runs import rejected_row
from polytape.store.schema import market_metrics_ts
from polytape.store.universe import tracked_condition_ids

log = structlog.get_logger("polytape.jobs.sync_open_interest")
MISSING_LISTED = 50  # condition ids of missing markets kept in the run's details


def _write(tx: Tx, *, batch: OpenInterestBatch, now: datetime) -> int:
    tx.reject([rejected_row(REJECT_SOURCE, reason, raw, now) for reason, raw in batch.rejected])
    return tx.upsert(market_metrics_ts, batch.rows, update=["open_interest"])


def _reject(tx: Tx, *, rows: list[dict[str, Any]]) -> int:
    return tx.reject(rows)


async def run(ctx: JobContext) -> JobResult:
    """One snapshot of the tracked universe's open interest."""
    await ensure_universe(ctx)
    condition_ids = await asyncio.to_thread(tracked_condition_ids, ctx.store)
    snapshot = ctx.clock().replace(microsecond=0)
    size = ctx.settings.oi_batch_size
    result = JobResult()
    missing: list[str] = []
    failed = 0
    for start in range(0, len(condition_ids), size):
        batch_ids: Sequence[str] = condition_ids[start : start + size]
        try:
            items = await ctx.clients.data.open_interest(batch_ids)
        except (ApiError, PayloadError) as exc:
            failed += 1
            missing.extend(batch_ids)
            log.warning("open interest batch failed", markets=len(batch_ids), error=str(exc)[:300])
            kept = bad_answer(exc, REJECT_SOURCE)
            if kept is not None:  # the answer that could not be used, kept once
                rows = [rejected_row(kept.source, kept.reason, kept.raw, ctx.clock())]
                await ctx.store.awrite(partial(_reject, rows=rows))
            continue
        batch = normalize_open_interest(items, batch_ids, snapshot)
        bad_rows = len(batch.rejected)
        kept_rows = cap_and_log(
            log,
            "open interest row rejected",
            [Rejected(REJECT_SOURCE, reason, raw) for reason, raw in batch.rejected],
            len(items),
        )
        batch.rejected = [(r.reason, r.raw) for r in kept_rows]
        written = await ctx.store.awrite(partial(_write, batch=batch, now=ctx.clock()))
        metrics.ROWS_WRITTEN.labels(table="market_metrics_ts").inc(written)
        result.rows_written += written
        result.count("rejected", bad_rows)
        result.count("unexpected", batch.unexpected)
        missing.extend(batch.missing)
    if condition_ids and failed * size >= len(condition_ids):
        result.status, result.error = "error", f"every /oi batch failed ({failed})"
    result.details.update(
        markets=len(condition_ids),
        snapshot=snapshot.isoformat(),
        gaps=len(missing),
        missing_markets=missing[:MISSING_LISTED],
        failed_batches=failed,
    )
    if missing and result.status != "error":
        result.partial(f"{len(missing)} market(s) without open interest in this snapshot")
    return result
