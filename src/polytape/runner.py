"""``polytape run``: every job on its cadence plus the WebSocket feed, until a signal.

Start-up order: migrate (under a lock, so workers starting together do not race),
register this worker, close runs whose process is gone, first runs of the metadata
jobs, the universe, then everything on its schedule. SIGINT or SIGTERM stops new
work, lets in-flight runs finish (their batches commit), stops the feed, releases
this worker's token leases, closes sockets and exits 0.

Several workers on one PostgreSQL: each job is a singleton (an advisory lock per
run, watched while it runs: a lock lost to a database restart cancels the run), and
a job whose last run (by any worker) started less than a cadence ago is skipped, so
cadences hold across workers. The book feed of each worker records the tokens it
leases (:mod:`polytape.workers`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from polytape import metrics
from polytape.app import job_context, open_store
from polytape.bookfeed import run_feed
from polytape.config import Settings
from polytape.errors import DatabaseRefused, StoreError
from polytape.jobs.base import JobContext, JobResult, run_job
from polytape.jobs.registry import METADATA_JOBS, POLLED_BOOKS_JOB, STEADY_JOBS, UNIVERSE_JOB, job_fn
from polytape.jobs.run_signal_engine import attach_live_signals
from polytape.redact import redact_urls
from polytape.scheduler import JOB_HOSTS, ScheduledJob, Scheduler
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store.dberrors import first_line
from polytape.store.locks import AdvisoryLock, LockLost, SqliteRunLock, run_guarded
from polytape.store.runs import last_started
from polytape.store.workers import (
    beat,
    close_interrupted_runs,
    new_worker_id,
    register_worker,
    stop_worker,
)
from polytape.workers import WorkerLeases

log = structlog.get_logger("polytape.run")

HEARTBEAT_SECONDS = 5.0
FEED_RETRY_SECONDS = 15.0
JobRun = Callable[[], Awaitable[JobResult | None]]
GAMMA_JOB = "sync-gamma-events"  # followed by a universe refresh, so new markets are followed at once
CLOSE_STALE_RUNS_EVERY = 15  # worker heartbeats between two looks for runs of dead workers
CADENCE_TOLERANCE = 0.95  # of the shortest jittered cadence: clocks and lock waits differ a little


def run_forever(settings: Settings, *, simulated: bool = False, web: bool = False) -> int:
    """Entry point of ``polytape run``; returns the exit code."""
    return asyncio.run(_main(settings, simulated, web))


async def _main(settings: Settings, simulated: bool, web: bool = False) -> int:
    sim: SimServer | None = None
    if simulated:
        sim = SimServer(seed=1, live=True)
        await sim.start()
        settings = settings.model_copy(
            update={
                "gamma_url": sim.gamma_url,
                "data_api_url": sim.data_api_url,
                "clob_url": sim.clob_url,
                "clob_ws_url": sim.clob_ws_url,
            }
        )
        log.info("simulator started", gamma=sim.gamma_url, data=sim.data_api_url, clob=sim.clob_url)
    store = await asyncio.to_thread(open_store, settings)
    run_lock = SqliteRunLock(store) if store.dialect == "sqlite" else None
    try:
        if run_lock is not None:
            run_lock.acquire()
        if settings.metrics_port:
            metrics.start_metrics_server(settings.metrics_port)
        async with job_context(settings, store, archive_name="run") as ctx:
            if web:
                await _start_web(ctx)
            runner = Runner(ctx)
            await runner.run()
        if runner.fatal is not None:
            raise runner.fatal
        return 0
    finally:
        if run_lock is not None:
            run_lock.release()
        store.close()
        if sim is not None:
            await sim.stop()


async def _start_web(ctx: JobContext) -> None:
    """The dashboard beside the jobs (``ctx.runtime.web``), showing this process's live books."""
    from polytape.web import WebServer

    runtime = ctx.runtime
    server = WebServer(ctx.store, ctx.settings, lambda: runtime.books)
    await server.start()
    runtime.web = server


class Runner:
    """Owns the scheduler, the feed and the heartbeat of one ``run`` process."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.store: Store = ctx.store
        self.stopping = asyncio.Event()
        self.started_at = ctx.clock()
        self.scheduler: Scheduler | None = None
        self.fatal: DatabaseRefused | None = None
        """A database error that waiting cannot fix; ``run`` stops and reports it."""
        self.unwritten: list[str] = []
        """What shutdown could not write because the database was not answering."""
        self._db_down = False
        self.worker_id = new_worker_id()
        ctx.runtime.worker_id = self.worker_id
        self.leases = WorkerLeases(self.settings, self.store, self.worker_id, ctx.clock, ctx.runtime)
        if ctx.runtime.archive is not None:  # tokens taken over are gaps until their first snapshot
            ctx.runtime.on_handover = ctx.runtime.archive.record_handovers

    # --- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig)
        feed = self.settings.ws_enabled
        await asyncio.to_thread(register_worker, self.store, self.worker_id, self.ctx.clock(), feed=feed)
        await self._close_interrupted()
        log.info(
            "polytape run starting",
            database=self.store.dialect,
            ws=self.settings.ws_enabled,
            worker=self.worker_id,
        )
        background = [asyncio.create_task(self._heartbeat(), name="heartbeat")]
        if self.ctx.runtime.archive is not None:
            self.ctx.runtime.archive.start()  # closed (flushed) by Runtime.aclose
        try:
            await self._first_runs()
            if not self.stopping.is_set():
                if self.settings.ws_enabled:
                    background.append(asyncio.create_task(self._feed(), name="ws-feed"))
                self.scheduler = Scheduler(self._schedule(), jitter=self.settings.schedule_jitter_fraction)
                self.scheduler.start()
                await self.stopping.wait()
        finally:
            await self._shutdown(background)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def request_stop(self, sig: int | None = None) -> None:
        if not self.stopping.is_set():
            log.info("stopping", signal=signal.Signals(sig).name if sig else None)
        self.stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        grace = self.settings.shutdown_grace_seconds
        # A write failing from now on gives up at once instead of waiting for the
        # database: the grace period holds whatever the database is doing.
        self.store.stop_retrying()
        if self.scheduler is not None:
            await self.scheduler.drain(grace)
        for task in background:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*background, return_exceptions=True), timeout=grace + 5)
        try:
            await asyncio.to_thread(self._write_heartbeat, stopped=True)
        except StoreError:
            self.unwritten.append("the final heartbeat")
        try:
            released = await asyncio.to_thread(stop_worker, self.store, self.worker_id, self.ctx.clock())
            log.info("token leases released", leases=released)
        except StoreError:
            self.unwritten.append(
                "the release of this worker's leases (others take them after the lease time)"
            )
        if self.unwritten:
            log.warning(
                "polytape run stopped; the database was not answering, so this was not written "
                "(the next start fetches it again)",
                not_written=self.unwritten,
            )
        else:
            log.info("polytape run stopped")

    def _database_error(self, exc: StoreError, what: str) -> None:
        """Log a database error once per outage; a permanent one stops the run."""
        if isinstance(exc, DatabaseRefused):
            self.fatal = self.fatal or exc  # reported by the CLI as its one error line
            self.request_stop()
        elif self.stopping.is_set():
            self.unwritten.append(what)
        elif not self._db_down:
            self._db_down = True
            log.warning("database unavailable; retrying until it answers", error=str(exc), doing=what)

    async def _close_interrupted(self) -> None:
        ttl = self.settings.worker_lease_seconds
        now = self.ctx.clock()
        closed = await asyncio.to_thread(close_interrupted_runs, self.store, now, ttl=ttl, me=self.worker_id)
        if closed:
            log.warning("closed runs left open by a stopped process", runs=closed)

    def _database_ok(self) -> None:
        if self._db_down:
            self._db_down = False
            log.info("database answering again")

    # --- jobs ------------------------------------------------------------------------
    def _runner_for(self, name: str, *, every_time: bool = False) -> JobRun:
        """One guarded run of job ``name``; ``every_time`` skips the cadence check (a chained run)."""
        fn = job_fn(name)

        async def go() -> JobResult | None:
            lock = AdvisoryLock(self.store, f"job:{name}")
            try:
                if not await asyncio.to_thread(lock.try_acquire):
                    log.info("job skipped: another worker holds it", job=name)
                    return None
            except Exception as exc:  # the database is away: try again at the next cadence
                log.warning("job skipped: database unavailable", job=name, error=redact_urls(first_line(exc)))
                return None
            try:
                if not every_time and await self._ran_recently(name):
                    return None
                if self.store.dialect != "postgresql":
                    return await run_job(self.ctx, name, fn)
                return await run_guarded(lock, lambda: run_job(self.ctx, name, fn))
            except LockLost as exc:
                log.error("job stopped: its lock was lost", job=name, error=str(exc))
                return None
            except StoreError as exc:  # the run could not even be recorded
                self._database_error(exc, f"the run of {name} and its uncommitted batch")
                return None
            finally:
                await asyncio.to_thread(lock.release)

        return go

    async def _ran_recently(self, name: str) -> bool:
        """True when any worker started ``name`` less than its shortest cadence ago (under its lock)."""
        last = await asyncio.to_thread(last_started, self.store, name)
        if last is None:
            return False
        jitter = self.settings.schedule_jitter_fraction
        shortest = self.settings.cadence(name) * (1 - jitter) * CADENCE_TOLERANCE
        ago = (self.ctx.clock() - last).total_seconds()
        if ago < shortest:
            log.debug("job skipped: another worker ran it recently", job=name, seconds_ago=round(ago, 2))
            return True
        return False

    def _chained(self, first: JobRun, then: JobRun) -> JobRun:
        """``first``, then ``then`` when ``first`` ran (new markets reach the universe within one sync)."""

        async def go() -> JobResult | None:
            result = await first()
            if result is not None and result.status != "error" and not self.stopping.is_set():
                await then()
            return result

        return go

    def _slowdown(self, name: str) -> Callable[[], float]:
        throttles = self.ctx.clients.throttles
        hosts = [throttles[h] for h in JOB_HOSTS.get(name, ()) if h in throttles]
        return lambda: max((t.slowdown for t in hosts), default=1.0)

    async def _first_runs(self) -> None:
        """Metadata first, then the universe, so the other jobs have markets to follow."""
        for stage in (METADATA_JOBS, (UNIVERSE_JOB,)):
            if self.stopping.is_set():
                continue
            await asyncio.gather(*(self._runner_for(name)() for name in stage))

    def _schedule(self) -> list[ScheduledJob]:
        names = [*METADATA_JOBS, UNIVERSE_JOB, *STEADY_JOBS]
        if not self.settings.ws_enabled:
            names.append(POLLED_BOOKS_JOB)
        jobs = []
        for name in names:
            go = self._runner_for(name)
            if name == GAMMA_JOB:
                go = self._chained(go, self._runner_for(UNIVERSE_JOB, every_time=True))
            cadence = self.settings.cadence(name)
            first = cadence if name in (*METADATA_JOBS, UNIVERSE_JOB) else 0.0
            jobs.append(ScheduledJob(name, cadence, go, self._slowdown(name), first_delay=first))
        return jobs

    # --- the WebSocket feed ---------------------------------------------------------------
    async def _feed(self) -> None:
        """Run the feed on this worker's leased tokens; restart it if it fails."""
        attach_live_signals(self.ctx)
        while not self.stopping.is_set():
            try:
                await run_feed(
                    self.ctx,
                    token_source=self.leases,
                    universe_poll_seconds=self.settings.worker_heartbeat_seconds,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("WebSocket feed failed; restarting")
                await asyncio.sleep(FEED_RETRY_SECONDS)

    # --- heartbeat ------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """This worker's ``workers`` row every few seconds, the ``runner`` state less often,
        for as long as the run lasts, through any outage."""
        every = self.settings.worker_heartbeat_seconds
        beats = 0
        loop = asyncio.get_running_loop()
        last_state = loop.time() - HEARTBEAT_SECONDS
        while True:
            try:
                now = self.ctx.clock()
                if not await asyncio.to_thread(beat, self.store, self.worker_id, now):
                    feed = self.settings.ws_enabled
                    await asyncio.to_thread(register_worker, self.store, self.worker_id, now, feed=feed)
                if loop.time() - last_state >= HEARTBEAT_SECONDS:
                    await asyncio.to_thread(self._write_heartbeat)
                    last_state = loop.time()
                beats += 1
                if beats % CLOSE_STALE_RUNS_EVERY == 0:
                    await self._close_interrupted()
            except StoreError as exc:
                self._database_error(exc, "a heartbeat")
            else:
                self._database_ok()
            await asyncio.sleep(every)

    def _write_heartbeat(self, stopped: bool = False) -> None:
        now: datetime = self.ctx.clock()
        value = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.started_at.isoformat(),
            "updated_at": now.isoformat(),
            "stopped_at": now.isoformat() if stopped else None,
            "worker_id": self.worker_id,
            "ws_enabled": self.settings.ws_enabled,
            "in_flight": sorted(self.scheduler.in_flight) if self.scheduler else [],
        }
        self.store.set_state("runner", value, now)
