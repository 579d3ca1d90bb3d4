"""The job registry, the CLI's job names and the modules in ``jobs/`` name the same jobs."""

from __future__ import annotations

import pkgutil

import pytest

import polytape.jobs
from polytape import cli
from polytape.jobs.registry import (
    JOBS,
    METADATA_JOBS,
    POLLED_BOOKS_JOB,
    SCHEDULED_JOBS,
    STEADY_JOBS,
    UNIVERSE_JOB,
    UnknownJob,
    job_fn,
)

NOT_JOBS = {"base", "registry"}


def test_registry_cli_and_modules_agree() -> None:
    modules = {m.name for m in pkgutil.iter_modules(polytape.jobs.__path__)} - NOT_JOBS
    assert set(cli.JOB_NAMES) == set(JOBS)
    assert len(cli.JOB_NAMES) == len(JOBS)
    assert {name.replace("-", "_") for name in JOBS} == modules
    for name, fn in JOBS.items():
        assert fn.__module__ == f"polytape.jobs.{name.replace('-', '_')}"
        assert fn.__name__ == "run"


def test_schedule_groups_cover_the_registry() -> None:
    grouped = [*METADATA_JOBS, UNIVERSE_JOB, *STEADY_JOBS, POLLED_BOOKS_JOB]
    assert sorted(grouped) == sorted(JOBS)
    assert set(SCHEDULED_JOBS) == set(grouped) - {POLLED_BOOKS_JOB}


def test_unknown_job_names_the_known_ones() -> None:
    assert job_fn("sync-large-trades") is JOBS["sync-large-trades"]
    with pytest.raises(UnknownJob, match="sync-gamma-events"):
        job_fn("sync-everything")
