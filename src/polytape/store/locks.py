"""Keeping two ``polytape run`` processes from doing the same work.

PostgreSQL: a session-level advisory lock per singleton job (and one for the
WebSocket feed), held on a dedicated connection for the length of the run; a
process that dies drops its connection and with it its locks.
SQLite: one ``run`` per database file, enforced with an exclusive ``flock`` on
a side file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from polytape.errors import PolytapeError
from polytape.store.core import Store


class AlreadyRunning(PolytapeError):
    """Another ``polytape run`` already owns this SQLite database."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    digest = hashlib.sha256(f"polytape:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """A non-blocking PostgreSQL advisory lock; on SQLite it always succeeds."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.key = lock_key(name)
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

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        except sa.exc.DBAPIError:
            pass  # the connection is gone, and the lock with it
        finally:
            conn.close()

    def __enter__(self) -> bool:
        return self.try_acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


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
