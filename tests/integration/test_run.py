"""`polytape run` end to end: a real subprocess against the simulator over real sockets.

Each test bounds its run, then checks that job_runs tell the truth and that the
stored data equals what the simulator served.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from polytape.sim import FaultProfile, SimServer, World
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.universe import tracked_tokens

from .runproc import (
    finished_runs,
    more_runs,
    run_env,
    runs_of,
    start_run,
    stepping,
    terminate,
    wait_exit,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

THRESHOLD = 300.0
EVERY_JOB = {
    "sync-gamma-events", "sync-tag-metadata", "refresh-universe", "sync-open-interest",
    "sync-large-trades", "run-signal-engine",
}  # fmt: skip


def small_world(seed: int) -> World:
    return World(seed, n_events=12, n_closed_events=2, history_days=2.0, trades_per_day=800)


def expected_trades(world: World) -> set[tuple[Any, ...]]:
    return {
        (f.transaction_hash, f.asset, f.proxy_wallet, f.side, f.size, f.price, f.timestamp)
        for f in world.trades
        if f.taker and f.usd >= THRESHOLD
    }


def stored_trades(store: Store) -> set[tuple[Any, ...]]:
    t = s.trades
    rows = store.fetch_all(
        sa.select(t.c.transaction_hash, t.c.token_id, t.c.wallet, t.c.side, t.c.size, t.c.price, t.c.trade_ts)
    )
    return {
        (r["transaction_hash"], r["token_id"], r["wallet"], r["side"], r["size"], r["price"],
         int(r["trade_ts"].timestamp()))
        for r in rows
    }  # fmt: skip


def stored_levels(store: Store, token_ids: list[str]) -> dict[str, dict[tuple[str, float], float]]:
    lv = s.orderbook_levels
    rows = store.fetch_all(sa.select(lv).where(lv.c.token_id.in_(token_ids)))
    out: dict[str, dict[tuple[str, float], float]] = {t: {} for t in token_ids}
    for r in rows:
        assert r["side"] in ("BUY", "SELL"), r  # what the book writer stores, nothing else
        side = "bid" if r["side"] == "BUY" else "ask"
        out[r["token_id"]][(side, float(r["price"]))] = float(r["size"])
    return out


def truth_levels(world: World, token_ids: list[str]) -> dict[str, dict[tuple[str, float], float]]:
    books = world.books
    out: dict[str, dict[tuple[str, float], float]] = {}
    for tok in token_ids:
        book = books.get(tok) or {"bids": [], "asks": []}
        levels = {("bid", float(x["price"])): float(x["size"]) for x in book["bids"]}
        levels.update({("ask", float(x["price"])): float(x["size"]) for x in book["asks"]})
        out[tok] = levels
    return out


def no_overlap(runs: list[dict[str, Any]]) -> bool:
    spans = sorted((r["started_at"], r["finished_at"]) for r in runs if r["finished_at"] is not None)
    return all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


async def test_run_with_faults_then_sigterm(db_url: str, tmp_path: Path) -> None:
    world = small_world(11)
    profile = FaultProfile(seed=3, error_rate=0.03, rate_429=0.03, retry_after=0.2, slow_rate=0.03,
                           slow_delay=0.2, ws_drop_rate=0.002)  # fmt: skip
    async with SimServer(world, fault_profile=profile) as sim:
        store = Store.open(db_url)
        proc = start_run(run_env(sim, db_url), tmp_path)
        try:
            async with stepping(sim) as pause:
                await wait_until(
                    lambda: all(finished_runs(store).get(j, 0) >= 2 for j in EVERY_JOB),
                    120,
                    "every job twice",
                )
                pause.set()
            sim.set_fault_profile(None)
            # One more complete pass of the pollers after the world stopped moving.
            marks = finished_runs(store)
            await wait_until(
                lambda: all(
                    finished_runs(store).get(j, 0) >= marks.get(j, 0) + 2
                    for j in ("sync-large-trades", "sync-open-interest")
                ),
                60,
                "two more trades and OI runs",
            )
            tokens = sorted(tracked_tokens(store))
            assert tokens, "the universe is empty"
            truth_books = truth_levels(world, tokens)
            await wait_until(lambda: stored_levels(store, tokens) == truth_books, 30, "stored books == truth")
            terminate(proc)
            assert await wait_exit(proc, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        jr = store.fetch_all(sa.select(s.job_runs))
        assert jr and all(r["status"] in ("ok", "partial") for r in jr), [
            (r["job_name"], r["status"], r["error"]) for r in jr if r["status"] not in ("ok", "partial")
        ]
        assert all(r["finished_at"] is not None for r in jr)
        assert stored_trades(store) == expected_trades(world)
        open_markets = {cid for cid, m in world.markets.items() if not m.closed}
        stored_markets = {r["condition_id"] for r in store.fetch_all(sa.select(s.markets.c.condition_id))}
        assert open_markets <= stored_markets
        latest_oi = store.fetch_all(
            sa.select(
                s.market_metrics_ts.c.condition_id, sa.func.max(s.market_metrics_ts.c.ts).label("ts")
            ).group_by(s.market_metrics_ts.c.condition_id)
        )
        assert latest_oi
        store.close()


async def test_sigkill_and_restart_lose_nothing(db_url: str, tmp_path: Path) -> None:
    world = small_world(12)
    async with SimServer(world) as sim:
        store = Store.open(db_url)
        env = run_env(sim, db_url)
        first = start_run(env, tmp_path)
        try:
            async with stepping(sim) as pause:
                await wait_until(
                    lambda: finished_runs(store).get("sync-large-trades", 0) >= 2, 90, "trades runs"
                )
                first.send_signal(signal.SIGKILL)
                await wait_exit(first, 10)
                await sim.step(5)  # the tape moves while polytape is down
                second = start_run(env, tmp_path)
                await more_runs(store, "sync-large-trades", 2, 90, "trades runs after restart")
                pause.set()
            await more_runs(store, "sync-large-trades", 2, 60, "trades runs after the world stopped")
            terminate(second)
            assert await wait_exit(second, 15) == 0
        finally:
            for p in (first, locals().get("second")):
                if isinstance(p, subprocess.Popen) and p.poll() is None:
                    p.kill()
        assert stored_trades(store) == expected_trades(world)
        t = s.trades
        dupes = store.fetch_all(
            sa.select(t.c.dedupe_key, sa.func.count().label("n"))
            .group_by(t.c.dedupe_key)
            .having(sa.func.count() > 1)
        )
        assert dupes == []
        statuses = {r["status"] for r in store.fetch_all(sa.select(s.job_runs))}
        assert "running" not in statuses
        store.close()


async def test_second_run_on_one_sqlite_file_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    async with SimServer(small_world(13)) as sim:
        env = run_env(sim, sqlite_url)
        first = start_run(env, tmp_path)
        store = Store.open(sqlite_url)
        try:
            await wait_until(
                lambda: finished_runs(store).get("sync-gamma-events", 0) >= 1, 60, "first run up"
            )
            second = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "polytape", "run"], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert second.returncode == 1
            assert "another polytape run" in second.stderr
            assert first.poll() is None
            terminate(first)
            assert await wait_exit(first, 15) == 0
        finally:
            if first.poll() is None:
                first.kill()
            store.close()


@pytest.mark.postgres
async def test_two_runs_on_one_postgres_do_not_double_run(pg_url: str, tmp_path: Path) -> None:
    async with SimServer(small_world(14)) as sim:
        env = run_env(sim, pg_url)
        store = Store.open(pg_url)
        procs = [start_run(env, tmp_path, "a.log"), start_run(env, tmp_path, "b.log")]
        try:
            async with stepping(sim) as pause:
                await wait_until(
                    lambda: finished_runs(store).get("sync-large-trades", 0) >= 8, 120, "several trades runs"
                )
                pause.set()
            await more_runs(store, "sync-large-trades", 2, 60, "trades runs after the world stopped")
            for p in procs:
                terminate(p)
            for p in procs:
                assert await wait_exit(p, 15) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        for job in ("sync-large-trades", "sync-open-interest", "run-signal-engine", "sync-gamma-events"):
            assert no_overlap(runs_of(store, job)), f"{job} ran twice at once"
        assert stored_trades(store) == expected_trades(sim.world)
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


async def test_status_healthy_while_running_unhealthy_after(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    async with SimServer(small_world(15)) as sim:
        env = run_env(sim, sqlite_url, POLYTAPE_METRICS_PORT=str(port))
        store = Store.open(sqlite_url)
        proc = start_run(env, tmp_path)

        def status() -> subprocess.CompletedProcess[str]:  # called from a thread
            return subprocess.run(
                [sys.executable, "-m", "polytape", "status"], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        try:
            async with stepping(sim):
                await wait_until(
                    lambda: all(finished_runs(store).get(j, 0) >= 1 for j in EVERY_JOB), 90, "every job once"
                )
                await wait_until(lambda: status().returncode == 0, 60, "a healthy status")
                text = await asyncio.to_thread(scrape, port)
                assert 'polytape_job_runs_total{job="sync-large-trades",status="ok"}' in text
                assert "polytape_http_requests_total" in text
                assert "polytape_ws_messages_total" in text
                assert 'polytape_rows_written_total{table="trades"}' in text
            terminate(proc)
            assert await wait_exit(proc, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        after = await asyncio.to_thread(status)
        assert after.returncode == 1
        assert "not running" in after.stdout
        store.close()


def restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120
    )


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("POLYTAPE_TEST_PG_RESTART"),
    reason="restarts the PostgreSQL server; set POLYTAPE_TEST_PG_RESTART=1 (CI does)",
)
async def test_postgres_restart_mid_run_is_survived(pg_url: str, tmp_path: Path) -> None:
    world = small_world(16)
    async with SimServer(world) as sim:
        store = Store.open(pg_url)
        proc = start_run(run_env(sim, pg_url), tmp_path)
        try:
            async with stepping(sim) as pause:
                await wait_until(
                    lambda: finished_runs(store).get("sync-large-trades", 0) >= 2, 90, "trades runs"
                )
                await asyncio.to_thread(restart_postgres)
                await more_runs(store, "sync-large-trades", 3, 120, "trades runs after the restart")
                pause.set()
            await more_runs(store, "sync-large-trades", 2, 60, "trades runs after the world stopped")
            assert proc.poll() is None, "polytape run died with the database"
            terminate(proc)
            assert await wait_exit(proc, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert stored_trades(store) == expected_trades(world)
        store.close()
