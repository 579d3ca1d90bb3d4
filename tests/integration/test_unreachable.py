"""A job whose every request failed to connect ends ``error``; answered failures stay ``partial``."""

from __future__ import annotations

import socket

import pytest

from polytape.app import job_context
from polytape.jobs.base import run_job
from polytape.jobs.registry import JOBS
from polytape.sim import SimServer
from polytape.store import Store

from .support import sim_context, sim_settings


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("job", ["sync-gamma-events", "sync-tag-metadata"])
async def test_every_request_refused_is_an_error(sim: SimServer, store: Store, job: str) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    settings = sim_settings(sim, store.url, gamma_url=dead, http_max_retries=1)
    async with job_context(settings, store) as ctx:
        result = await run_job(ctx, job, JOBS[job])
    assert result.status == "error", result
    assert result.error is not None and "could connect" in result.error


async def test_answered_failures_stay_partial(sim: SimServer, store: Store) -> None:
    sim.inject(host="gamma", path="/tags", kind="503", count=100)
    async with sim_context(sim, store, http_max_retries=0) as ctx:
        result = await run_job(ctx, "sync-tag-metadata", JOBS["sync-tag-metadata"])
    assert result.status == "partial", result
