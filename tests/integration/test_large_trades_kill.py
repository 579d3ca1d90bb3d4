"""``polytape job sync-large-trades`` killed with SIGKILL mid-run, then rerun: still exact."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from polytape.sim import SimServer
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.trades import load_watermark
from tests.integration.runproc import wait_until
from tests.integration.trades_truth import stored_keys, truth_keys
from tests.support.procs import polytape_env

THRESHOLD = 300.0
LOOKBACK_H = 500.0


def job_env(sim: SimServer, db_url: str) -> dict[str, str]:
    env = polytape_env()
    env.update(
        {
            "POLYTAPE_DATABASE_URL": db_url,
            "POLYTAPE_GAMMA_URL": sim.gamma_url,
            "POLYTAPE_DATA_API_URL": sim.data_api_url,
            "POLYTAPE_CLOB_URL": sim.clob_url,
            "POLYTAPE_CLOB_WS_URL": sim.clob_ws_url,
            "POLYTAPE_LOG_FORMAT": "json",
            "POLYTAPE_LARGE_TRADE_USD_THRESHOLD": str(THRESHOLD),
            "POLYTAPE_TRADES_PAGE_SIZE": "10",
            "POLYTAPE_TRADES_MAX_PAGES": "500",
            "POLYTAPE_TRADES_INITIAL_LOOKBACK_HOURS": str(LOOKBACK_H),
        }
    )
    return env


def start_job(env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    log = (cwd / "job.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "polytape", "job", "sync-large-trades"],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def test_sigkill_mid_run_then_rerun_is_exact(sim: SimServer, store: Store, tmp_path: Path) -> None:
    since = int(time.time() - LOOKBACK_H * 3600)
    expected = truth_keys(sim.world, min_usd=THRESHOLD, since=since)
    pages_needed = len(expected) // 10
    assert pages_needed > 20
    sim.inject(host="data", path="/trades", kind="slow", delay=0.05, count=10_000)  # a run takes a while
    env = job_env(sim, store.url)
    proc = start_job(env, tmp_path)
    try:
        await wait_until(lambda: sim.count("data", "/trades") >= 10, 60, "ten pages served")
        proc.kill()  # SIGKILL: no cleanup, no final commit
        assert await asyncio.to_thread(proc.wait, 10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = sim.count("data", "/trades")
    assert killed_at < pages_needed  # really mid-run
    partial = stored_keys(store)
    assert 0 < len(partial) < len(expected)
    assert set(partial) <= expected
    assert load_watermark(store) is None  # the watermark never got ahead of the rows
    runs = store.fetch_all(sa.select(s.job_runs.c.status))
    assert [r["status"] for r in runs] == ["running"]  # the killed run left its mark

    sim.clear_faults()
    proc = start_job(env, tmp_path)
    assert await asyncio.to_thread(proc.wait, 60) == 0, (tmp_path / "job.log").read_text()[-2000:]
    keys = stored_keys(store)
    assert not [k for k, n in Counter(keys).items() if n > 1]
    assert set(keys) == expected
    assert load_watermark(store) == max(
        f.timestamp for f in sim.world.trades if f.taker and f.usd >= THRESHOLD
    )
