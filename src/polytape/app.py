"""Wiring: build the store, the clients, the runtime and a job context from settings.

:func:`job_context` is the one place a process's components are opened and closed: the
HTTP clients, the store (unless given), and the :class:`~polytape.runtime.Runtime`
whose components (webhook sink, ...) are closed by ``Runtime.aclose`` on the way out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from polytape.archive.service import BookArchive
from polytape.clients import open_clients
from polytape.config import Settings
from polytape.http import HttpConfig
from polytape.jobs.base import JobContext, JobResult, run_job
from polytape.jobs.registry import job_fn
from polytape.runtime import Runtime
from polytape.store import Store


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """The configured store, migrated to the newest schema unless told not to."""
    return Store.open(
        settings.database_url,
        migrate=migrate,
        batch_size=settings.db_batch_size,
        write_retry_seconds=settings.db_retry_seconds,
    )


@asynccontextmanager
async def job_context(
    settings: Settings, store: Store | None = None, *, archive_name: str = "job"
) -> AsyncIterator[JobContext]:
    """A context with open HTTP clients and a runtime holding the archive (when enabled).

    The archive writer touches the disk only once something is recorded; ``archive_name``
    names its files and state (``run`` for ``polytape run``).
    """
    own_store = store is None
    store = store or open_store(settings)
    clients = await open_clients(
        settings.gamma_url, settings.data_api_url, settings.clob_url, HttpConfig.from_settings(settings)
    )
    runtime = Runtime(archive=BookArchive.from_settings(settings, archive_name))
    try:
        yield JobContext(settings=settings, store=store, clients=clients, runtime=runtime)
    finally:
        await runtime.aclose(settings.shutdown_grace_seconds)
        await clients.aclose()
        if own_store:
            store.close()


async def run_one_job(settings: Settings, name: str) -> JobResult:
    """``polytape job NAME``: one audited run in a fresh context."""
    fn = job_fn(name)
    async with job_context(settings) as ctx:
        return await run_job(ctx, name, fn)
