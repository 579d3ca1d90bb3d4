"""What every job shares: its result and the audited runner (and, re-exported, its context).

:class:`JobContext` lives in :mod:`polytape.runtime` (backfills use it too). The names of
the jobs and their functions are in :mod:`polytape.jobs.registry`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from polytape import metrics
from polytape.errors import PolytapeError
from polytape.http import count_requests
from polytape.runtime import JobContext, utcnow
from polytape.store.runs import begin_job_run, finish_job_run

log = structlog.get_logger("polytape.jobs")
Status = Literal["ok", "partial", "error"]

__all__ = ["JobContext", "JobFn", "JobResult", "Status", "run_job", "utcnow"]


@dataclass
class JobResult:
    """What a run did; becomes its ``job_runs`` row."""

    status: Status = "ok"
    rows_written: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def partial(self, reason: str) -> None:
        """Something was missed but what was stored is kept."""
        if self.status == "ok":
            self.status = "partial"
        self.details.setdefault("problems", []).append(reason)

    def count(self, key: str, n: int = 1) -> None:
        self.details[key] = self.details.get(key, 0) + n


JobFn = Callable[[JobContext], Awaitable[JobResult]]


async def run_job(ctx: JobContext, name: str, fn: JobFn) -> JobResult:
    """Run ``fn`` once as the job ``name``, audited in ``job_runs``; never raises for job failures."""
    started = ctx.clock()
    run_id = await asyncio.to_thread(begin_job_run, ctx.store, name, started, ctx.runtime.worker_id)
    t0 = time.perf_counter()
    bound = log.bind(job=name, run_id=run_id)
    deadline = ctx.settings.job_deadline_seconds
    timer = asyncio.timeout(deadline)
    try:
        with count_requests() as tally:
            async with timer:  # POLYTAPE_JOB_DEADLINE_SECONDS: no server holds a run longer
                result = await fn(ctx)
        if result.status == "partial" and tally.none_connected:
            # Nothing answered at all: the API is unreachable, which is an error, not a gap.
            problems = result.details.get("problems") or ["no page fetched"]
            result.status = "error"
            result.error = result.error or f"no request could connect ({tally.attempts} tried): {problems[0]}"
    except TimeoutError as exc:
        if not timer.expired():
            bound.exception("job crashed")
            result = JobResult(status="error", error=f"{type(exc).__name__}: {exc}")
        else:
            result = JobResult(status="error", error=f"deadline of {deadline:g}s passed; run stopped")
    except asyncio.CancelledError:
        # Shutdown ran out of grace: what the job committed stays, the run says so.
        await asyncio.to_thread(
            finish_job_run,
            ctx.store,
            run_id,
            finished_at=ctx.clock(),
            status="error",
            rows_written=0,
            error="cancelled: polytape was stopping",
            details={"duration_s": round(time.perf_counter() - t0, 3)},
        )
        raise
    except PolytapeError as exc:
        result = JobResult(status="error", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug must be recorded, not kill the scheduler
        bound.exception("job crashed")
        result = JobResult(status="error", error=f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - t0
    result.details["duration_s"] = round(elapsed, 3)
    await asyncio.to_thread(
        finish_job_run,
        ctx.store,
        run_id,
        finished_at=ctx.clock(),
        status=result.status,
        rows_written=result.rows_written,
        error=result.error,
        details=result.details,
    )
    metrics.JOB_RUNS.labels(job=name, status=result.status).inc()
    metrics.JOB_DURATION.labels(job=name).observe(elapsed)
    level = "info" if result.status == "ok" else "warning"
    getattr(bound, level)(
        "job finished",
        status=result.status,
        rows=result.rows_written,
        seconds=round(elapsed, 2),
        error=result.error,
    )
    return result
