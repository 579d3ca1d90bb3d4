"""Several ``polytape run`` workers on one database: who is alive, and who records which token.

Every worker has a ``workers`` row whose ``heartbeat_at`` it renews every few
seconds. A worker whose heartbeat is older than the lease time (``ttl``) is dead.

Tokens are divided by ``token_leases`` rows, one per token (the primary key makes
two owners impossible). Each worker runs :func:`lease_round` on its heartbeat, in
one transaction serialised by a transaction-level advisory lock (PostgreSQL) or
by SQLite's single writer:

- it drops its leases of tokens that left the universe;
- its fair share is ``ceil(wanted / live feed workers)`` (a worker whose feed is off
  registers with ``tokens = NO_FEED`` and is not counted). Above its share plus a small
  slack (:func:`rebalance_slack`, so a universe change of a few tokens moves no other
  token) it releases the excess (``released_at`` is set, so the next owner knows since
  when the token went unrecorded); below its share it claims tokens nobody live holds:
  never leased, released, or held by a dead worker (then the gap runs from that
  worker's last heartbeat);
- it returns the tokens it now owns; the feed follows exactly those.

A claimed token that somebody held before is a hand-over, returned with the time
its recording stopped so the caller can record the gap.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from polytape.store.core import Store, Tx
from polytape.store.engine import lock_key
from polytape.store.schema import job_runs, token_leases, workers

LEASE_LOCK = "token-leases"
NO_FEED = -1  # ``workers.tokens`` of a worker that records no books (its WebSocket feed is off)
FORGET_DEAD_AFTER = timedelta(days=1)  # dead worker rows are kept this long for ``status``


def new_worker_id() -> str:
    """A unique id for this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Handover:
    """A token this worker claimed from an earlier owner: unrecorded since ``since``."""

    token_id: str
    since: datetime
    previous_worker: str
    reason: str  # ``released`` (the owner let go) or ``worker died``


@dataclass(frozen=True)
class LeaseRound:
    """What one round decided for this worker."""

    owned: frozenset[str]
    claimed: frozenset[str] = frozenset()
    released: frozenset[str] = frozenset()
    handovers: tuple[Handover, ...] = ()
    live_workers: int = 1
    share: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def register_worker(
    store: Store, worker_id: str, now: datetime, *, pid: int | None = None, feed: bool = True
) -> None:
    """Create (or revive) this worker's row; ``feed=False``: it will take no token leases."""
    row = {
        "worker_id": worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid() if pid is None else pid,
        "started_at": now,
        "heartbeat_at": now,
        "stopped_at": None,
        "tokens": 0 if feed else NO_FEED,
    }
    store.upsert(workers, [row], update=["heartbeat_at", "stopped_at", "tokens"])


def beat(store: Store, worker_id: str, now: datetime) -> bool:
    """Renew the heartbeat; False when the row is gone (then register again)."""
    w = workers
    stmt = sa.update(w).where(w.c.worker_id == worker_id).values(heartbeat_at=now, stopped_at=None)
    return store.write(lambda tx: int(tx.execute(stmt).rowcount or 0)) > 0


def stop_worker(store: Store, worker_id: str, now: datetime) -> int:
    """A clean stop: release every lease (others take them at once) and mark the row stopped."""

    def _do(tx: Tx) -> int:
        _serialise(tx)
        t = token_leases
        released = tx.execute(
            sa.update(t).where(t.c.worker_id == worker_id, t.c.released_at.is_(None)).values(released_at=now)
        ).rowcount
        tx.execute(
            sa.update(workers).where(workers.c.worker_id == worker_id).values(stopped_at=now, tokens=0)
        )
        return int(released or 0)

    return store.write(_do)


def _serialise(tx: Tx) -> None:
    if tx.dialect == "postgresql":
        ns = f"{tx.execute(sa.text('SELECT current_database()')).scalar()}/"
        ns += str(tx.execute(sa.text("SELECT current_schema()")).scalar())
        tx.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(LEASE_LOCK, ns)})


def _alive(row: Any, now: datetime, ttl: float, *, check_pid: bool = False) -> bool:
    """Heartbeat fresh and not stopped; with ``check_pid``, a worker of this host must still exist."""
    if row.stopped_at is not None or (now - row.heartbeat_at).total_seconds() > ttl:
        return False
    return not (check_pid and row.host == socket.gethostname() and _pid_gone(int(row.pid)))


def lease_round(
    store: Store,
    worker_id: str,
    wanted: Collection[str],
    now: datetime,
    *,
    ttl: float,
    limit: int | None = None,
) -> LeaseRound:
    """Renew this worker, rebalance, and return the tokens it owns now (see the module notes).

    ``limit`` caps how many tokens one round claims (a ramp for a new worker).
    """
    wanted_set = set(wanted)

    def _do(tx: Tx) -> LeaseRound:
        _serialise(tx)
        w, t = workers, token_leases
        tx.execute(sa.update(w).where(w.c.worker_id == worker_id).values(heartbeat_at=now, stopped_at=None))
        rows = list(tx.execute(sa.select(w)))
        alive = {r.worker_id for r in rows if r.tokens != NO_FEED and _alive(r, now, ttl, check_pid=True)} | {
            worker_id
        }
        last_seen = {r.worker_id: (r.stopped_at or r.heartbeat_at) for r in rows}
        leases = {
            str(r.token_id): (str(r.worker_id), r.released_at)
            for r in tx.execute(sa.select(t.c.token_id, t.c.worker_id, t.c.released_at))
        }
        mine = {tok for tok, (owner, rel) in leases.items() if owner == worker_id and rel is None}
        gone = sorted(tok for tok in leases if tok not in wanted_set)
        for start in range(0, len(gone), 1000):
            tx.execute(sa.delete(t).where(t.c.token_id.in_(gone[start : start + 1000])))
        mine &= wanted_set
        share = math.ceil(len(wanted_set) / len(alive)) if wanted_set else 0
        released: list[str] = []
        claimed: list[str] = []
        handovers: list[Handover] = []
        if len(mine) > share + rebalance_slack(share):
            released = sorted(mine)[share:]
            mine.difference_update(released)
            for start in range(0, len(released), 1000):
                chunk = released[start : start + 1000]
                tx.execute(sa.update(t).where(t.c.token_id.in_(chunk)).values(released_at=now))
        elif len(mine) < share:
            room = share - len(mine)
            if limit is not None:
                room = min(room, limit)
            free = sorted(
                tok
                for tok in wanted_set
                if tok not in leases or leases[tok][1] is not None or leases[tok][0] not in alive
            )
            claimed = free[:room]
            for tok in claimed:
                if tok not in leases:
                    continue
                owner, rel = leases[tok]
                if rel is not None:
                    handovers.append(Handover(tok, rel, owner, "released"))
                else:
                    since = last_seen.get(owner, now)
                    handovers.append(Handover(tok, since, owner, "worker died"))
            rows_out = [
                {"token_id": tok, "worker_id": worker_id, "acquired_at": now, "released_at": None}
                for tok in claimed
            ]
            tx.upsert(t, rows_out, update=["worker_id", "acquired_at", "released_at"])
            mine.update(claimed)
        tx.execute(sa.update(w).where(w.c.worker_id == worker_id).values(tokens=len(mine)))
        dead_before = now - FORGET_DEAD_AFTER
        tx.execute(sa.delete(w).where(w.c.heartbeat_at < dead_before, w.c.worker_id != worker_id))
        return LeaseRound(
            owned=frozenset(mine),
            claimed=frozenset(claimed),
            released=frozenset(released),
            handovers=tuple(handovers),
            live_workers=len(alive),
            share=share,
        )

    return store.write(_do)


def rebalance_slack(share: int) -> int:
    """How far above its share a worker may stay: a small universe change moves no other token."""
    return max(2, share // 50)


def list_workers(store: Store, now: datetime, ttl: float) -> list[dict[str, Any]]:
    """Every known worker with ``alive`` and the age of its heartbeat, newest first."""
    rows = store.fetch_all(sa.select(workers).order_by(workers.c.started_at.desc()))
    for row in rows:
        row["alive"] = row["stopped_at"] is None and (now - row["heartbeat_at"]).total_seconds() <= ttl
        row["heartbeat_age_s"] = round((now - row["heartbeat_at"]).total_seconds(), 1)
    return rows


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def close_interrupted_runs(store: Store, now: datetime, *, ttl: float, me: str | None = None) -> int:
    """Mark ``running`` runs as errors, but only those whose process is really gone.

    Gone: no worker recorded (an older polytape), a worker whose heartbeat is older
    than ``ttl`` or that stopped, or one on this host whose process id no longer exists.
    A run of a live worker elsewhere is left alone.
    """

    def _do(tx: Tx) -> int:
        jr, w = job_runs, workers
        running = list(tx.execute(sa.select(jr.c.id, jr.c.worker_id).where(jr.c.status == "running")))
        if not running:
            return 0
        known = {r.worker_id: r for r in tx.execute(sa.select(w))}
        dead: list[int] = []
        for run in running:
            owner = known.get(run.worker_id) if run.worker_id else None
            if me is not None and run.worker_id == me:
                continue
            if owner is None or not _alive(owner, now, ttl, check_pid=True):
                dead.append(int(run.id))
        if dead:
            tx.execute(
                sa.update(jr)
                .where(jr.c.id.in_(dead))
                .values(status="error", finished_at=now, error="interrupted: the process stopped mid-run")
            )
        return len(dead)

    return store.write(_do)
