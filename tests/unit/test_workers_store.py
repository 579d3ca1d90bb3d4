"""Workers, token leases, interrupted runs, migration and lock namespaces, on both engines."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from polytape.store import Store
from polytape.store import schema as s
from polytape.store.locks import AdvisoryLock
from polytape.store.runs import begin_job_run, last_started
from polytape.store.workers import (
    close_interrupted_runs,
    lease_round,
    list_workers,
    register_worker,
    stop_worker,
)
from tests.conftest import PG_URL, pg_schema_url

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
TTL = 10.0
TOKENS = [f"tok{i:03d}" for i in range(25)]


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def owners(store: Store) -> dict[str, str]:
    t = s.token_leases
    stmt = sa.select(t.c.token_id, t.c.worker_id).where(t.c.released_at.is_(None))
    return store.read(lambda c: {str(a): str(b) for a, b in c.execute(stmt)})


def test_one_worker_owns_every_wanted_token_and_follows_the_universe(store: Store) -> None:
    register_worker(store, "a", NOW)
    first = lease_round(store, "a", TOKENS, NOW, ttl=TTL)
    assert first.owned == set(TOKENS) and first.claimed == set(TOKENS)
    assert first.handovers == ()  # never recorded before: no gap to report
    second = lease_round(store, "a", [*TOKENS[:20], "new"], later(1), ttl=TTL)
    assert second.owned == set(TOKENS[:20]) | {"new"}
    assert second.claimed == {"new"}
    assert set(owners(store)) == set(TOKENS[:20]) | {"new"}  # leases of tokens that left are gone


def test_a_new_worker_gets_its_share_and_tokens_never_have_two_owners(store: Store) -> None:
    register_worker(store, "a", NOW)
    lease_round(store, "a", TOKENS, NOW, ttl=TTL)
    register_worker(store, "b", later(1))
    b1 = lease_round(store, "b", TOKENS, later(1), ttl=TTL)
    assert b1.owned == set() and b1.share == 13  # nothing free yet: a still holds all
    a2 = lease_round(store, "a", TOKENS, later(2), ttl=TTL)
    assert len(a2.owned) == 13 and len(a2.released) == 12
    b2 = lease_round(store, "b", TOKENS, later(3), ttl=TTL)
    assert b2.owned == a2.released
    assert {h.reason for h in b2.handovers} == {"released"}
    assert {h.since for h in b2.handovers} == {later(2)}
    held = owners(store)
    assert set(held) == set(TOKENS)
    assert not (a2.owned & b2.owned)
    rows = {r["worker_id"]: r for r in list_workers(store, later(3), TTL)}
    assert rows["a"]["tokens"] == 13 and rows["b"]["tokens"] == 12
    assert rows["a"]["alive"] and rows["b"]["alive"]


def test_a_dead_workers_tokens_are_taken_over_with_the_gap_since_its_last_heartbeat(store: Store) -> None:
    register_worker(store, "a", NOW)
    register_worker(store, "b", NOW)
    a1 = lease_round(store, "a", TOKENS, NOW, ttl=TTL)
    b1 = lease_round(store, "b", TOKENS, NOW, ttl=TTL)
    assert len(a1.owned) == 13 and b1.owned == set(TOKENS) - a1.owned
    # a stops beating; b's rounds go on.
    b2 = lease_round(store, "b", TOKENS, later(5), ttl=TTL)
    assert b2.owned == b1.owned  # a is not dead yet
    b3 = lease_round(store, "b", TOKENS, later(11), ttl=TTL)
    assert b3.owned == set(TOKENS) and b3.claimed == a1.owned
    assert {(h.reason, h.since, h.previous_worker) for h in b3.handovers} == {("worker died", NOW, "a")}
    alive = {r["worker_id"]: r["alive"] for r in list_workers(store, later(11), TTL)}
    assert alive == {"a": False, "b": True}


def test_a_clean_stop_releases_at_once(store: Store) -> None:
    register_worker(store, "a", NOW)
    register_worker(store, "b", NOW)
    a1 = lease_round(store, "a", TOKENS, NOW, ttl=TTL)
    lease_round(store, "b", TOKENS, NOW, ttl=TTL)
    assert stop_worker(store, "a", later(1)) == len(a1.owned)
    b2 = lease_round(store, "b", TOKENS, later(2), ttl=TTL)
    assert b2.owned == set(TOKENS) and b2.live_workers == 1
    assert {h.reason for h in b2.handovers} == {"released"}


def test_a_claim_limit_ramps_a_worker_up(store: Store) -> None:
    register_worker(store, "a", NOW)
    assert len(lease_round(store, "a", TOKENS, NOW, ttl=TTL, limit=10).owned) == 10
    assert len(lease_round(store, "a", TOKENS, later(1), ttl=TTL, limit=10).owned) == 20


def test_only_runs_of_gone_processes_are_closed(store: Store) -> None:
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    register_worker(store, "live-elsewhere", NOW)
    store.write(lambda tx: tx.execute(sa.update(s.workers).values(host="other-host")))
    register_worker(store, "killed-here", NOW, pid=int(dead_pid.stdout))
    register_worker(store, "stale", NOW - timedelta(seconds=60))
    live = begin_job_run(store, "sync-large-trades", NOW, "live-elsewhere")
    killed = begin_job_run(store, "sync-open-interest", NOW, "killed-here")
    stale = begin_job_run(store, "run-signal-engine", NOW, "stale")
    legacy = begin_job_run(store, "refresh-universe", NOW)
    assert close_interrupted_runs(store, later(1), ttl=TTL, me="me") == 3
    status = {r["id"]: r["status"] for r in store.fetch_all(sa.select(s.job_runs))}
    assert status == {live: "running", killed: "error", stale: "error", legacy: "error"}


def test_last_started_is_across_workers(store: Store) -> None:
    assert last_started(store, "sync-large-trades") is None
    begin_job_run(store, "sync-large-trades", NOW, "a")
    begin_job_run(store, "sync-large-trades", later(5), "b")
    assert last_started(store, "sync-large-trades") == later(5)


# ---- PostgreSQL only ---------------------------------------------------------------------


@pytest.mark.postgres
def test_workers_started_together_on_a_fresh_database_migrate_once(pg_url: str) -> None:
    """Four stores opened at the same instant on an empty schema all come up (no version race)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            barrier.wait()
            Store.open(pg_url).close()
        except BaseException as exc:
            errors.append(exc)

    for _ in range(3):
        with psycopg.connect(PG_URL, autocommit=True) as conn:  # empty the schema again
            schema = pg_url.rsplit("%3D", 1)[1]
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
    store = Store(pg_url)
    try:
        assert store.is_current()
    finally:
        store.close()


@pytest.mark.postgres
def test_lock_keys_are_per_schema(pg_url: str) -> None:
    other_schema = pg_url.rsplit("%3D", 1)[1] + "_other"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {other_schema}")
    one, same, other = Store(pg_url), Store(pg_url), Store(pg_schema_url(other_schema))
    try:
        held = AdvisoryLock(one, "job:sync-large-trades")
        assert held.try_acquire() and held.held()
        assert not AdvisoryLock(same, "job:sync-large-trades").try_acquire()
        elsewhere = AdvisoryLock(other, "job:sync-large-trades")
        assert elsewhere.try_acquire()
        elsewhere.release()
        held.release()
        assert not held.held()
    finally:
        for st in (one, same, other):
            st.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {other_schema} CASCADE")


def test_a_worker_without_a_feed_takes_no_share(store: Store) -> None:
    register_worker(store, "a", NOW)
    register_worker(store, "jobs-only", NOW, feed=False)
    first = lease_round(store, "a", TOKENS, NOW, ttl=TTL)
    assert first.owned == set(TOKENS) and first.live_workers == 1
    row = {r["worker_id"]: r for r in list_workers(store, NOW, TTL)}["jobs-only"]
    assert row["tokens"] == -1 and row["alive"]


def test_a_small_universe_change_moves_no_other_token(store: Store) -> None:
    tokens = [f"tok{i:03d}" for i in range(100)]
    for w in ("a", "b"):
        register_worker(store, w, NOW)
    a1 = lease_round(store, "a", tokens, NOW, ttl=TTL)
    b1 = lease_round(store, "b", tokens, NOW, ttl=TTL)
    assert len(a1.owned) == 50 and len(b1.owned) == 50
    shrunk = [t for t in tokens if t not in sorted(b1.owned)[:4]]  # four of b's tokens leave
    a2 = lease_round(store, "a", shrunk, later(1), ttl=TTL)
    b2 = lease_round(store, "b", shrunk, later(1), ttl=TTL)
    assert a2.owned == a1.owned and a2.released == set()  # 50 > share 48, within the slack
    assert b2.owned == b1.owned - set(sorted(b1.owned)[:4])
