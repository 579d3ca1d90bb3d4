"""Issue 12 items 6 and 7: a running polytape survives a database outage longer than its
retry window and resumes; SIGTERM during an outage exits cleanly within the grace period
and says what was not written. The database is a private PostgreSQL started (and
stopped, and restarted) by the test: the shared server is never touched."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from polytape.sim import SimServer, World
from polytape.store import Store
from polytape.store import schema as s

from .private_pg import PrivatePostgres, private_pg
from .runproc import finished_runs, run_env, start_run, stepping, terminate, wait_exit, wait_until

pytestmark = pytest.mark.slow
__all__ = ["private_pg"]

GRACE = 5.0


def heartbeat(store: Store) -> datetime | None:
    try:
        value: Any = store.get_state("runner")
    except Exception:
        return None
    if not isinstance(value, dict) or not value.get("updated_at"):
        return None
    return datetime.fromisoformat(value["updated_at"])


def finished_since(store: Store, when: datetime) -> int:
    jr = s.job_runs
    stmt = sa.select(sa.func.count()).select_from(jr).where(jr.c.finished_at > when)
    try:
        return int(store.read(lambda c: c.execute(stmt).scalar_one()))
    except Exception:
        return 0


def books_since(store: Store, when: datetime) -> int:
    ob = s.orderbooks
    stmt = sa.select(sa.func.count()).select_from(ob).where(ob.c.updated_at > when)
    try:
        return int(store.read(lambda c: c.execute(stmt).scalar_one()))
    except Exception:
        return 0


async def test_outage_longer_than_the_retry_window_then_sigterm_during_an_outage(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    pg = private_pg
    world = World(5, n_events=6, n_closed_events=1, history_days=1.0, trades_per_day=300)
    async with SimServer(world) as sim:
        env = run_env(
            sim,
            pg.url,
            POLYTAPE_DB_RETRY_SECONDS="2",
            POLYTAPE_SHUTDOWN_GRACE_SECONDS=str(GRACE),
            POLYTAPE_MIN_VOLUME="0",
            POLYTAPE_MIN_OI="0",
        )
        proc = start_run(env, tmp_path)
        store = Store.open(pg.url, write_retry_seconds=0)
        try:
            async with stepping(sim):
                await wait_until(lambda: heartbeat(store) is not None, 60, "a first heartbeat")
                await wait_until(lambda: finished_runs(store).get("sync-large-trades", 0) >= 2, 90, "runs")
                await wait_until(
                    lambda: books_since(store, datetime(2000, 1, 1, tzinfo=UTC)) > 0, 60, "books"
                )

                # 1. An outage several times longer than the retry window (2 s) and than
                #    the heartbeat period: everything must come back by itself.
                await asyncio.to_thread(pg.stop)
                await asyncio.sleep(15)
                assert proc.poll() is None, "polytape run died during the outage"
                await asyncio.to_thread(pg.start)
                back = datetime.now(UTC)
                await wait_until(lambda: (heartbeat(store) or back) > back, 60, "the heartbeat resumes")
                await wait_until(lambda: finished_since(store, back) >= 3, 90, "jobs run again")
                await wait_until(lambda: books_since(store, back) > 0, 90, "the book feed writes again")

                # 2. SIGTERM while the database is down: a clean exit within the grace period.
                await asyncio.to_thread(pg.stop)
                await asyncio.sleep(4)
                started = time.monotonic()
                terminate(proc)
                code = await wait_exit(proc, GRACE + 25)
                took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
            store.close()
    log = (tmp_path / "run.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    last = lines[-1]
    assert "not written" in last["event"] and last["not_written"], last
    assert took < GRACE + 25  # generous: the point is it does not wait out the retries (120 s before)
    assert any(line["event"] == "database unavailable; retrying until it answers" for line in lines)


async def test_a_permanent_error_while_running_stops_at_once_with_one_line(tmp_path: Path) -> None:
    """Issue 12 item 8: a table that disappears under a running polytape is not retried for
    minutes: the run stops at once, exit 1, with one error line naming the problem."""
    db_url = f"sqlite:///{tmp_path / 'polytape.db'}"
    world = World(6, n_events=3, n_closed_events=0, history_days=0.5, trades_per_day=100)
    async with SimServer(world) as sim:
        env = run_env(sim, db_url, POLYTAPE_DB_RETRY_SECONDS="3600", POLYTAPE_WS_ENABLED="false")
        proc = start_run(env, tmp_path)
        store = Store.open(db_url, write_retry_seconds=0)
        try:
            await wait_until(lambda: heartbeat(store) is not None, 60, "a first heartbeat")
            store.write(lambda tx: tx.execute(sa.text("DROP TABLE sync_state")))
            code = await wait_exit(proc, 60)  # with the old 120 s retries this would time out
        finally:
            if proc.poll() is None:
                proc.kill()
            store.close()
    log = (tmp_path / "run.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert code == 1, log[-2000:]
    assert len(errors) == 1 and "no such table: sync_state" in errors[0], log[-2000:]
    assert "Traceback" not in log
