"""Keeping two ``polytape run`` processes from doing the same work.

PostgreSQL: a session-level advisory lock per singleton job (and one for the
WebSocket feed), held on a dedicated connection for the length of the run; a
process that dies drops its connection and with it its locks.
SQLite: one ``run`` per database file, enforced with an exclusive ``flock`` on
a side file.

Keys are namespaced by the database and schema the store writes to
(:meth:`Store.lock_namespace`), so polytapes on different schemas of one server
never block each other. A held lock can be lost (a PostgreSQL restart drops
every session): :meth:`AdvisoryLock.held` asks the server, and :func:`run_guarded`
cancels the guarded work as soon as that answer is no.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import sqlalchemy as sa
import structlog

from polytape.errors import PolytapeError
from polytape.store.core import Store
from polytape.store.engine import lock_key

T = TypeVar("T")
log = structlog.get_logger("polytape.store.locks")
__all__ = ["AdvisoryLock", "AlreadyRunning", "LockLost", "SqliteRunLock", "lock_key", "run_guarded"]
LOCK_CHECK_SECONDS = 1.0


class AlreadyRunning(PolytapeError):
    """Another ``polytape run`` already owns this SQLite database."""


class LockLost(PolytapeError):
    """A held advisory lock is gone (the database restarted or dropped the session)."""


def _key_parts(key: int) -> tuple[int, int]:
    """How ``pg_locks`` shows a bigint key: (classid, objid) = (high, low) 32 bits."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class AdvisoryLock:
    """A non-blocking PostgreSQL advisory lock; on SQLite it always succeeds."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.key = lock_key(name, store.lock_namespace())
        self._conn: sa.Connection | None = None

    def try_acquire(self) -> bool:
        if self.store.dialect != "postgresql":
            return True
        if self._conn is not None:
            return True
        conn = self.store.engine.connect()
        try:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        """True while the server still grants this lock to our session (asks it)."""
        if self.store.dialect != "postgresql":
            return True
        conn = self._conn
        if conn is None:
            return False
        hi, lo = _key_parts(self.key)
        stmt = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_backend_pid() AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid)"
            " AND objsubid = 1"
        )
        try:
            got = int(conn.execute(stmt, {"hi": hi, "lo": lo}).scalar_one())
            conn.commit()
        except sa.exc.SQLAlchemyError:  # the session is gone, and the lock with it
            return False
        return got > 0

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        except sa.exc.SQLAlchemyError:
            pass  # the connection is gone, and the lock with it
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.close()

    def __enter__(self) -> bool:
        return self.try_acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


async def run_guarded(
    lock: AdvisoryLock, work: Callable[[], Awaitable[T]], *, check_every: float = LOCK_CHECK_SECONDS
) -> T:
    """Run ``work`` while ``lock`` is held; cancel it and raise :class:`LockLost` once it is not."""
    task: asyncio.Task[T] = asyncio.ensure_future(work())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=check_every)
            if done:
                return task.result()
            if not await asyncio.to_thread(lock.held):
                log.error("lock lost; stopping the work it guards", lock=lock.name)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise LockLost(f"lost the lock {lock.name!r} (did the database restart?)")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class SqliteRunLock:
    """Exclusive ownership of a SQLite database file by one ``run`` process."""

    def __init__(self, store: Store) -> None:
        database = store.engine.url.database or ""
        if database.startswith("file:"):  # a SQLite URI filename: file:PATH?mode=…
            database = database.removeprefix("file:").split("?", 1)[0]
        # The real path: a symlink or a relative path to the same file must find the same lock.
        real = os.path.realpath(database) if database and database != ":memory:" else ""
        self.path = Path(real + ".run.lock") if real else None
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise AlreadyRunning(
                f"another polytape run ({holder}) is using {self.path.with_suffix('').with_suffix('')}; "
                "stop it first, or use PostgreSQL to run several workers"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
