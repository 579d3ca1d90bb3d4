"""Jobs: client → normalizer → store, one module per job, each with ``async def run(ctx)``.

:mod:`.base` holds :class:`JobContext` (settings, store, clients, clock and the typed
:class:`~polytape.runtime.Runtime`), :class:`JobResult` and the audited :func:`run_job`;
:mod:`.registry` maps job names to functions. Jobs import clients, normalize, store,
signals, books and runtime, never app, runner, cli or backfill.
"""

from polytape.jobs.base import JobContext, JobFn, JobResult, run_job

__all__ = ["JobContext", "JobFn", "JobResult", "run_job"]
