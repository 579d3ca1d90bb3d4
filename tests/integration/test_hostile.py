"""Issue 12 items 1-5: hostile answers from a hostile server over real sockets.

Bounded memory on a 49 MB junk answer (measured on the job's own process), capped
rejects and log lines per page, per-attempt and per-job deadlines against a trickling
body, invalid UTF-8 / 100k-deep JSON / HTML as payload errors kept once, and
implausible trade values rejected.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from polytape.app import job_context
from polytape.config import load_settings
from polytape.jobs.base import JobContext, JobResult
from polytape.jobs.base import run_job as run_job_fn
from polytape.jobs.registry import job_fn
from polytape.normalize import REJECTS_KEPT_PER_PAGE
from polytape.sim import SimServer, World
from polytape.store import Store
from polytape.store import schema as s

from .hostile import MB, HostileServer, hostile_server, junk_items
from .support import sim_context

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

JOB_SOURCES = {
    "sync-large-trades": "data:trades",
    "sync-open-interest": "data:oi",
    "sync-orderbooks": "clob.",
    "sync-gamma-events": "gamma:events",
}
FAST = {
    "http_backoff_base_seconds": 0.01,
    "http_backoff_max_seconds": 0.05,
    "http_max_retries": 1,
    "trades_max_pages": 1,
    "ws_enabled": False,
}


async def universe(db_url: str) -> None:
    """Markets and a tracked universe, loaded from the simulator (the jobs under attack
    then only need the hostile server)."""
    store = Store.open(db_url)
    try:
        async with (
            SimServer(World(3, n_events=4)) as sim,
            sim_context(sim, store, min_liquidity=0, min_volume=0, min_oi=0) as ctx,
        ):
            for job in ("sync-gamma-events", "refresh-universe"):
                assert (await run_job(ctx, job)).status == "ok"
    finally:
        store.close()


async def run_job(ctx: JobContext, name: str) -> JobResult:
    return await run_job_fn(ctx, name, job_fn(name))


@asynccontextmanager
async def hostile_context(server: HostileServer, store: Store, **overrides: Any) -> AsyncIterator[JobContext]:
    settings = load_settings(
        database_url=store.url,
        gamma_url=server.url,
        data_api_url=server.url,
        clob_url=server.url,
        **{**FAST, **overrides},
    )
    async with job_context(settings, store) as ctx:
        yield ctx


def rejects(store: Store, source_prefix: str) -> list[dict[str, Any]]:
    t = s.rejected_payloads
    return store.fetch_all(sa.select(t).where(t.c.source.startswith(source_prefix)).order_by(t.c.id))


@pytest.fixture
async def prepared(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'polytape.db'}"
    await universe(url)
    return url


# --- item 1: a 49 MB junk answer, in the job's own process ------------------------------------


async def run_job_process(tmp_path: Path, db_url: str, job: str, server_url: str) -> tuple[int, str, float]:
    """``polytape job JOB`` in a subprocess; its exit code, its output and its peak RSS in MB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYTAPE_")}
    env.update(
        {
            "POLYTAPE_DATABASE_URL": db_url,
            "POLYTAPE_GAMMA_URL": server_url,
            "POLYTAPE_DATA_API_URL": server_url,
            "POLYTAPE_CLOB_URL": server_url,
            "POLYTAPE_LOG_FORMAT": "json",
            "POLYTAPE_HTTP_MAX_RESPONSE_MB": "50",
            "POLYTAPE_HTTP_MAX_RETRIES": "1",
            "POLYTAPE_HTTP_BACKOFF_BASE_SECONDS": "0.01",
            "POLYTAPE_TRADES_MAX_PAGES": "1",
            "POLYTAPE_WS_ENABLED": "false",
        }
    )
    out_path, rss_path = tmp_path / f"{job}.out", tmp_path / f"{job}.rss"
    # The job runs under a small launcher: a child forked straight from pytest would count
    # pytest's own memory in its peak (Linux keeps the pre-exec high-water mark).
    command = [sys.executable, "-c", LAUNCHER, str(rss_path), sys.executable, "-m", "polytape", "job", job]
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*command, env=env, stdout=out, stderr=out)
        code = await proc.wait()
    return code, out_path.read_text(), int(rss_path.read_text()) / 1024  # KiB on Linux


LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("job", ["sync-large-trades", "sync-orderbooks", "sync-open-interest"])
async def test_49mb_junk_answer_keeps_memory_and_rejects_bounded(
    prepared: str, tmp_path: Path, job: str
) -> None:
    async with hostile_server() as server:
        server.mode, server.junk_bytes = "junk", 49 * MB
        code, output, peak_mb = await run_job_process(tmp_path, prepared, job, server.url)
    assert peak_mb < 300, f"{job} peaked at {peak_mb:.0f} MB"
    assert code == 1 or "partial" in output or "error" in output, output[-2000:]
    assert "Traceback" not in output and len(output.splitlines()) < 40, output[-3000:]
    store = Store(prepared)
    try:
        kept = rejects(store, JOB_SOURCES[job])
    finally:
        store.close()
    assert 1 <= len(kept) <= 2 and all(len(r["raw"]) <= 70_000 for r in kept)  # the page, kept once, cut
    assert any("size cap" in r["reason"] for r in kept)


# --- item 1: a mostly-junk page under the caps: capped rejects and log lines ---------------------


@pytest.mark.parametrize(
    ("job", "source", "size"),
    [
        ("sync-large-trades", "data:trades", 2 * MB),
        ("sync-open-interest", "data:oi", MB),
        ("sync-orderbooks", "clob.book", 2 * MB),
    ],
)
async def test_junk_page_is_capped_and_counted(prepared: str, job: str, source: str, size: int) -> None:
    store = Store(prepared)
    try:
        async with hostile_server() as server, hostile_context(server, store) as ctx:
            server.mode, server.junk_bytes = "junk", size
            result = await run_job(ctx, job)
        kept = rejects(store, source)
    finally:
        store.close()
    n = junk_items(size)
    assert len(kept) == REJECTS_KEPT_PER_PAGE + 1, [r["reason"] for r in kept][:3]
    summary = kept[-1]
    assert f"{n} of {n} items on the page rejected" in summary["reason"]
    assert len(summary["raw"]) <= 70_000
    assert result.details.get("rejected") == n or result.details.get("rejected", 0) >= n


# --- item 2: deadlines against a trickling body -------------------------------------------------


async def test_trickled_body_hits_the_attempt_deadline(prepared: str) -> None:
    store = Store(prepared)
    try:
        async with (
            hostile_server() as server,
            hostile_context(
                server, store, http_deadline_seconds=1, http_timeout_seconds=30, http_max_retries=1
            ) as ctx,
        ):
            server.mode = "trickle"
            result = await run_job(ctx, "sync-large-trades")
    finally:
        store.close()
    assert result.status == "error" and "deadline of 1s passed" in (result.error or "")
    assert server.requests == 2  # one attempt and one retry, each cut at its deadline


async def test_trickled_body_hits_the_job_deadline(prepared: str) -> None:
    store = Store(prepared)
    try:
        async with (
            hostile_server() as server,
            hostile_context(
                server, store, http_deadline_seconds=600, http_timeout_seconds=30, job_deadline_seconds=1.5
            ) as ctx,
        ):
            server.mode = "trickle"
            result = await run_job(ctx, "sync-large-trades")
        runs = store.fetch_all(sa.select(s.job_runs).where(s.job_runs.c.job_name == "sync-large-trades"))
    finally:
        store.close()
    assert result.status == "error" and "deadline of 1.5s passed" in (result.error or "")
    assert runs[-1]["status"] == "error" and runs[-1]["finished_at"] is not None


# --- items 3 and 4: payload errors, each bad page kept once ----------------------------------------


@pytest.mark.parametrize("mode", ["bad_utf8", "deep", "html"])
@pytest.mark.parametrize("job", list(JOB_SOURCES))
async def test_bad_page_is_a_payload_error_kept_once(prepared: str, job: str, mode: str) -> None:
    store = Store(prepared)
    try:
        async with hostile_server() as server, hostile_context(server, store) as ctx:
            server.mode = mode
            result: JobResult = await run_job(ctx, job)
        kept = rejects(store, JOB_SOURCES[job])
    finally:
        store.close()
    assert "crashed" not in (result.error or "") and "RecursionError" not in (result.error or "")
    assert "UnicodeDecodeError" not in (result.error or "")
    if mode == "bad_utf8" and job != "sync-large-trades":
        # valid JSON whose strings are not UTF-8: refused as a payload, kept once
        assert len(kept) == 1, [r["reason"] for r in kept]
    else:
        assert len(kept) == 1, [r["reason"] for r in kept]
        assert "not valid JSON" in kept[0]["reason"]


# --- item 5: implausible values ------------------------------------------------------------------


async def test_absurd_trade_values_are_rejected(prepared: str) -> None:
    base = {
        "proxyWallet": "0xabc",
        "side": "BUY",
        "asset": "123",
        "conditionId": "0xc0",
        "outcome": "Yes",
        "outcomeIndex": 0,
        "transactionHash": "0xfeed",
    }
    store = Store(prepared)
    try:
        async with hostile_server() as server, hostile_context(server, store) as ctx:
            server.mode = "trade"
            for size, price in ((9.9e9, 0.49), (100.0, 1e-300)):
                server.trade = {**base, "size": size, "price": price, "timestamp": 1_790_000_000}
                await run_job(ctx, "sync-large-trades")
        stored = store.count(s.trades)
        kept = rejects(store, "data:trades")
    finally:
        store.close()
    assert stored == 0
    assert (
        len(kept) == 2 and "size is absurd" in kept[0]["reason"] and "tick grid's range" in kept[1]["reason"]
    )
