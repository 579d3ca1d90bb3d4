"""The job registry: every job's name, its function, and how ``polytape run`` orders them.

:data:`JOBS` maps each name (``polytape job NAME``, ``job_runs.job``) to its ``run``
coroutine function. Imports are static: a job exists when its module is listed here, and
``tests/unit/test_registry.py`` checks that this table, the CLI and the modules in
``jobs/`` agree.
"""

from __future__ import annotations

from polytape.errors import PolytapeError
from polytape.jobs import (
    refresh_universe,
    run_signal_engine,
    sync_gamma_events,
    sync_large_trades,
    sync_open_interest,
    sync_orderbooks,
    sync_tag_metadata,
)
from polytape.jobs.base import JobFn

JOBS: dict[str, JobFn] = {
    "sync-gamma-events": sync_gamma_events.run,
    "sync-tag-metadata": sync_tag_metadata.run,
    "refresh-universe": refresh_universe.run,
    "sync-open-interest": sync_open_interest.run,
    "sync-large-trades": sync_large_trades.run,
    "sync-orderbooks": sync_orderbooks.run,
    "run-signal-engine": run_signal_engine.run,
}

METADATA_JOBS: tuple[str, ...] = ("sync-gamma-events", "sync-tag-metadata")
"""Run first at start-up, so the universe has markets to choose from."""
UNIVERSE_JOB = "refresh-universe"
"""Run after the metadata jobs at start-up, then on its cadence."""
STEADY_JOBS: tuple[str, ...] = ("sync-open-interest", "sync-large-trades", "run-signal-engine")
"""Scheduled from the start, first run at once."""
POLLED_BOOKS_JOB = "sync-orderbooks"
"""Scheduled only when the WebSocket feed is off."""
SCHEDULED_JOBS: tuple[str, ...] = (*METADATA_JOBS, UNIVERSE_JOB, *STEADY_JOBS)
"""What ``polytape status`` reports (plus :data:`POLLED_BOOKS_JOB` without the feed)."""


class UnknownJob(PolytapeError):
    """No job has this name."""


def job_fn(name: str) -> JobFn:
    """The function of the job called ``name``; :class:`UnknownJob` if there is none."""
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(f"unknown job {name!r}; jobs: {', '.join(JOBS)}") from None
