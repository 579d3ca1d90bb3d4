"""Helpers for integration tests: a job context wired to a running simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from polytape.app import job_context
from polytape.config import Settings, load_settings
from polytape.jobs.base import JobContext
from polytape.store import Store


def sim_settings(sim: Any, db_url: str, **overrides: Any) -> Settings:
    """Settings pointing every base URL at ``sim``, with fast HTTP retries for tests."""
    base: dict[str, Any] = {
        "database_url": db_url,
        "gamma_url": sim.gamma_url,
        "data_api_url": sim.data_api_url,
        "clob_url": sim.clob_url,
        "clob_ws_url": sim.clob_ws_url,
        "http_backoff_base_seconds": 0.01,
        "http_backoff_max_seconds": 0.2,
        "http_timeout_seconds": 5.0,
    }
    base.update(overrides)
    return load_settings(**base)


@asynccontextmanager
async def sim_context(sim: Any, store: Store, **overrides: Any) -> AsyncIterator[JobContext]:
    """A JobContext on ``store`` whose clients talk to ``sim`` over real sockets."""
    settings = sim_settings(sim, store.url, **overrides)
    async with job_context(settings, store) as ctx:
        yield ctx
