"""Wiring: build the store, the clients and a job context from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from polytape.config import Settings
from polytape.jobs.base import JobContext, JobFn, JobResult, run_job
from polytape.store import Store


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """The configured store, migrated to the newest schema unless told not to."""
    return Store.open(settings.database_url, migrate=migrate, batch_size=settings.db_batch_size)


def http_config(settings: Settings) -> object:
    from polytape.http import HttpConfig

    return HttpConfig(
        timeout=settings.http_timeout_seconds,
        max_retries=settings.http_max_retries,
        backoff_base=settings.http_backoff_base_seconds,
        backoff_max=settings.http_backoff_max_seconds,
        max_concurrency=settings.http_max_concurrency,
        max_response_bytes=int(settings.http_max_response_mb * 1_000_000),
    )


@asynccontextmanager
async def job_context(settings: Settings, store: Store | None = None) -> AsyncIterator[JobContext]:
    """A context with open HTTP clients; closes what it opened."""
    from polytape.clients import open_clients
    from polytape.http import HttpConfig

    cfg = http_config(settings)
    assert isinstance(cfg, HttpConfig)
    own_store = store is None
    store = store or open_store(settings)
    clients = await open_clients(settings.gamma_url, settings.data_api_url, settings.clob_url, cfg)
    try:
        yield JobContext(settings=settings, store=store, clients=clients)
    finally:
        await clients.aclose()
        if own_store:
            store.close()


async def run_one_job(settings: Settings, name: str, fn: JobFn) -> JobResult:
    async with job_context(settings) as ctx:
        return await run_job(ctx, name, fn)
