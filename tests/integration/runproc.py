"""Running ``polytape run`` as a real subprocess against an in-process simulator."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from polytape.sim import SimServer
from polytape.store import Store
from polytape.store import schema as s
from tests.support import waiting
from tests.support.procs import polytape_env

FAST_CADENCES = {
    "POLYTAPE_SYNC_GAMMA_EVENTS_INTERVAL": "6",
    "POLYTAPE_SYNC_TAG_METADATA_INTERVAL": "30",
    "POLYTAPE_REFRESH_UNIVERSE_INTERVAL": "5",
    "POLYTAPE_SYNC_OPEN_INTEREST_INTERVAL": "2",
    "POLYTAPE_SYNC_LARGE_TRADES_INTERVAL": "1",
    "POLYTAPE_SYNC_ORDERBOOKS_INTERVAL": "1",
    "POLYTAPE_RUN_SIGNAL_ENGINE_INTERVAL": "1",
    "POLYTAPE_BOOK_RESYNC_MINUTES": "0.1",
    "POLYTAPE_SCHEDULE_JITTER_FRACTION": "0",
}


def run_env(sim: SimServer, db_url: str, **extra: str) -> dict[str, str]:
    env = polytape_env()
    env.update(FAST_CADENCES)
    env.update(
        {
            "POLYTAPE_DATABASE_URL": db_url,
            "POLYTAPE_GAMMA_URL": sim.gamma_url,
            "POLYTAPE_DATA_API_URL": sim.data_api_url,
            "POLYTAPE_CLOB_URL": sim.clob_url,
            "POLYTAPE_CLOB_WS_URL": sim.clob_ws_url,
            "POLYTAPE_LOG_FORMAT": "json",
            "POLYTAPE_HTTP_BACKOFF_BASE_SECONDS": "0.05",
            "POLYTAPE_HTTP_BACKOFF_MAX_SECONDS": "0.5",
            "POLYTAPE_HTTP_TIMEOUT_SECONDS": "5",
            "POLYTAPE_TRADES_INITIAL_LOOKBACK_HOURS": "2000",  # older than any simulated trade
            "POLYTAPE_LARGE_TRADE_USD_THRESHOLD": "300",
            "POLYTAPE_MIN_LIQUIDITY": "0",
            "POLYTAPE_SHUTDOWN_GRACE_SECONDS": "5",
        }
    )
    env.update(extra)
    return env


def start_run(env: dict[str, str], cwd: Path, log_name: str = "run.log") -> subprocess.Popen[bytes]:
    log = (cwd / log_name).open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "polytape", "run"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
    )


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """:func:`tests.support.waiting.wait_until` for conditions that read the database."""
    await waiting.wait_until(cond, timeout, what, every=0.25, blocking=True)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"polytape run did not exit within {timeout}s")
        await asyncio.sleep(0.05)
    return proc.returncode


def finished_runs(store: Store) -> dict[str, int]:
    jr = s.job_runs
    stmt = sa.select(jr.c.job_name, sa.func.count()).where(jr.c.status != "running").group_by(jr.c.job_name)
    return store.read(lambda c: {str(n): int(k) for n, k in c.execute(stmt)})


def runs_of(store: Store, job: str) -> list[dict[str, Any]]:
    jr = s.job_runs
    return store.fetch_all(sa.select(jr).where(jr.c.job_name == job).order_by(jr.c.id))


def stepping(sim: SimServer, interval: float = 0.3) -> AbstractAsyncContextManager[asyncio.Event]:
    """:func:`tests.support.waiting.stepping` at ``polytape run``'s pace (a step every 0.3 s)."""
    return waiting.stepping(sim, every=interval)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)


async def more_runs(store: Store, job: str, n: int, timeout: float, what: str) -> None:
    """Wait until ``job`` has finished ``n`` more runs than it has now."""
    mark = finished_runs(store).get(job, 0)
    await wait_until(lambda: finished_runs(store).get(job, 0) >= mark + n, timeout, what)
