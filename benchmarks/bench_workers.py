"""Benchmark: two ``polytape run`` workers on one PostgreSQL; one dies: when are its tokens recorded again?

Run: ``.venv/bin/python benchmarks/bench_workers.py [--events 300] [--pg postgresql://postgres@127.0.0.1:5432/test]
[--mode kill|stop|both]``. It starts the simulator (a world of ``--events`` events, every
live market tracked with ``POLYTAPE_UNIVERSE_MODE=all``), two workers on a throwaway
schema with the default heartbeat and lease times, waits until the tokens are divided and
every book is stored, then

- ``kill``: SIGKILLs one worker (on this host the survivor also notices the missing process);
- ``stop``: SIGSTOPs one, so only the lease time can tell (what a worker on another host,
  or a frozen one, looks like);

and prints the seconds from the signal until every token of that worker has a book row
written after it, by the survivor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa

from polytape.errors import StoreError
from polytape.sim import SimServer
from polytape.sim.world import World
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.universe import tracked_tokens


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def env_for(sim: SimServer, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYTAPE_")}
    env.update(
        POLYTAPE_DATABASE_URL=url,
        POLYTAPE_GAMMA_URL=sim.gamma_url,
        POLYTAPE_DATA_API_URL=sim.data_api_url,
        POLYTAPE_CLOB_URL=sim.clob_url,
        POLYTAPE_CLOB_WS_URL=sim.clob_ws_url,
        POLYTAPE_UNIVERSE_MODE="all",
        POLYTAPE_LOG_FORMAT="json",
        POLYTAPE_WS_SILENCE_TIMEOUT_SECONDS="60",
        POLYTAPE_ARCHIVE_ENABLED="false",
    )
    return env


def workers(store: Store) -> dict[int, str]:
    try:
        rows = store.fetch_all(sa.select(s.workers).where(s.workers.c.stopped_at.is_(None)))
    except StoreError:
        return {}
    return {int(r["pid"]): str(r["worker_id"]) for r in rows if r["tokens"] > 0}


def balanced(store: Store) -> bool:
    """Two workers, each with its half of every tracked token."""
    try:
        counts = [int(r["tokens"]) for r in store.fetch_all(sa.select(s.workers))]
        total = len(tracked_tokens(store))
    except StoreError:
        return False
    return len(counts) == 2 and min(counts) > 0 and sum(counts) == total and max(counts) - min(counts) <= 1


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def leases(store: Store, worker_id: str) -> set[str]:
    t = s.token_leases
    stmt = sa.select(t.c.token_id).where(t.c.worker_id == worker_id, t.c.released_at.is_(None))
    return {str(v) for v in store.read(lambda c: c.execute(stmt).scalars().all())}


def written_since(store: Store, tokens: set[str], since: datetime) -> int:
    ob = s.orderbooks
    stmt = sa.select(sa.func.count()).where(ob.c.token_id.in_(sorted(tokens)), ob.c.updated_at >= since)
    return int(store.read(lambda c: c.execute(stmt).scalar_one()))


async def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def one(mode: str, events: int, pg: str, workdir: Path) -> float:
    schema = "bench_w_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = schema_url(pg, schema)
    world = World(9, n_events=events, n_closed_events=0, history_days=0.05, trades_per_day=50)
    procs: list[subprocess.Popen[bytes]] = []
    store = Store(url)
    try:
        async with SimServer(world) as sim:

            async def step() -> None:
                while True:
                    await sim.step()
                    await asyncio.sleep(0.05)

            stepper = asyncio.create_task(step())
            env = env_for(sim, url)
            cmd = [sys.executable, "-m", "polytape", "run"]
            for name in ("a", "b"):
                procs.append(await asyncio.to_thread(start, cmd, env, workdir / f"{mode}-{name}.log"))
            await wait_for(lambda: balanced(store), 300, "the tokens divided between two workers")
            victim = procs[0]
            orphans = leases(store, workers(store)[victim.pid])
            ob = s.orderbooks
            await wait_for(
                lambda: store.count(ob, ob.c.token_id.in_(sorted(orphans))) == len(orphans), 120, "books"
            )
            since = datetime.now(UTC)
            t0 = time.monotonic()
            victim.send_signal(signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
            if mode == "kill":
                await asyncio.to_thread(victim.wait)  # reaped, as init or a supervisor would
            await wait_for(lambda: written_since(store, orphans, since) == len(orphans), 120, "take-over")
            took = time.monotonic() - t0
            how = {"kill": "SIGKILLed", "stop": "SIGSTOPped"}[mode]
            print(f"{len(orphans)} tokens of the {how} worker recorded again after {took:.1f} s")
            stepper.cancel()
            return took
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()
        store.close()
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument(
        "--pg", default=os.environ.get("POLYTAPE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--mode", choices=("kill", "stop", "both"), default="both")
    args = parser.parse_args()
    modes = ("kill", "stop") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            asyncio.run(one(mode, args.events, args.pg, Path(tmp)))


if __name__ == "__main__":
    main()
