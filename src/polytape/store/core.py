"""The store: batched, idempotent writes and reads on SQLite or PostgreSQL.

Every write goes through :meth:`Store.write`, one transaction that is retried
when the database goes away (a PostgreSQL restart, a locked SQLite file), so a
job either commits all of a batch or none of it, and never half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite

from polytape.errors import StoreError, StoreStopping
from polytape.store import engine as engine_mod
from polytape.store import schema
from polytape.store.dberrors import first_line, is_permanent, is_unique_violation, translate

T = TypeVar("T")
Row = Mapping[str, Any]
log = structlog.get_logger("polytape.store")

# Writes keep trying this long before the job sees a StoreError.
DEFAULT_WRITE_RETRY_SECONDS = 120.0


_XACT_LOCK = sa.text(
    "SELECT pg_advisory_xact_lock(hashtextextended("
    "CAST(:name AS text) || current_database() || '/' || current_schema(), 0))"
)


def _chunks(rows: Sequence[Row], size: int) -> Iterable[Sequence[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _group_by_columns(rows: Iterable[Row]) -> dict[frozenset[str], list[Row]]:
    """executemany needs one column set per statement: split rows by their keys."""
    groups: dict[frozenset[str], list[Row]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return groups


class Tx:
    """One open transaction; every write primitive the jobs need."""

    def __init__(self, conn: sa.Connection, batch_size: int) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.batch_size = batch_size
        self._locks: set[str] = set()
        self.memo: dict[str, Any] = {}  # what write primitives learned in this transaction

    def lock(self, name: str) -> None:
        """Hold the lock ``name`` until this transaction ends; writers of the same name on
        this database and schema wait for one another (PostgreSQL; a SQLite file has one
        writer at a time anyway). Taking it again in the same transaction costs nothing.

        The key is made on the server from the name, the database and the schema, so it
        costs one statement per transaction and name.
        """
        if name in self._locks:
            return
        if self.dialect == "postgresql":
            self.conn.execute(_XACT_LOCK, {"name": f"polytape:{name}:"})
        self._locks.add(name)

    @contextlib.contextmanager
    def driver_cursor(self) -> Iterator[Any]:
        """A cursor of the driver itself, for the bulk paths SQLAlchemy has no form for
        (binary ``COPY``, multi-row ``VALUES`` of a chosen size).

        Its errors come out as SQLAlchemy's (``IntegrityError``, ``OperationalError``, …),
        and a lost connection is invalidated, so :meth:`Store.write` judges and retries
        them as it does every other statement's.
        """
        raw = self.conn.connection.driver_connection
        cursor = raw.cursor()  # type: ignore[union-attr]
        dialect = self.conn.dialect
        base: type[Exception] = dialect.loaded_dbapi.Error
        try:
            yield cursor
        except base as exc:
            lost = bool(dialect.is_disconnect(exc, raw, cursor))  # type: ignore[arg-type]
            if lost:
                self.conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                None, None, exc, base, connection_invalidated=lost, dialect=dialect
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def insert_ignore(self, table: sa.Table, rows: Sequence[Row]) -> int:
        """Insert rows whose unique keys are new; return how many were inserted."""
        if not rows:
            return 0
        pk = next(iter(table.primary_key.columns))
        inserted = 0
        for group in _group_by_columns(rows).values():
            for chunk in _chunks(group, self.batch_size):
                stmt = self._insert(table).on_conflict_do_nothing().returning(pk)
                inserted += len(self.conn.execute(stmt, list(chunk)).all())
        return inserted

    def upsert(
        self,
        table: sa.Table,
        rows: Sequence[Row],
        *,
        key: Sequence[str] | None = None,
        update: Sequence[str] | None = None,
        set_exprs: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> int:
        """Insert or update by ``key`` (default: the primary key).

        ``update`` names the columns a conflict overwrites (default: every
        non-key column the rows carry); ``set_exprs(excluded)`` may supply SQL
        expressions for some of them (e.g. keep a value the CLOB already set).
        """
        if not rows:
            return 0
        key_cols = list(key or [c.name for c in table.primary_key.columns])
        # One statement may not touch a key twice (PostgreSQL refuses): last row wins.
        latest: dict[tuple[Any, ...], Row] = {}
        for row in rows:
            latest[tuple(row[k] for k in key_cols)] = row
        count = 0
        for cols, group in _group_by_columns(latest.values()).items():
            names = [c for c in (update if update is not None else cols) if c in cols and c not in key_cols]
            for chunk in _chunks(group, self.batch_size):
                stmt = self._insert(table)
                values: dict[str, Any] = {n: stmt.excluded[n] for n in names}
                if set_exprs is not None:
                    values.update({k: v for k, v in set_exprs(stmt.excluded).items() if k in cols})
                if values:
                    stmt = stmt.on_conflict_do_update(index_elements=key_cols, set_=values)
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=key_cols)
                self.conn.execute(stmt, list(chunk))
                count += len(chunk)
        return count

    def delete(self, table: sa.Table, *where: Any) -> int:
        return int(self.conn.execute(sa.delete(table).where(*where)).rowcount or 0)

    def execute(self, stmt: Any, params: Any = None) -> sa.CursorResult[Any]:
        return self.conn.execute(stmt, params) if params is not None else self.conn.execute(stmt)

    # --- watermarks and bad input -------------------------------------------
    def set_state(self, key: str, value: Any, now: datetime) -> None:
        self.upsert(schema.sync_state, [{"key": key, "value": value, "updated_at": now}])

    def get_state(self, key: str) -> Any:
        t = schema.sync_state
        return self.conn.execute(sa.select(t.c.value).where(t.c.key == key)).scalar()

    def reject(self, rows: Sequence[Row]) -> int:
        """Keep payloads that could not be parsed (source, received_at, reason, raw)."""
        if not rows:
            return 0
        self.conn.execute(sa.insert(schema.rejected_payloads), list(rows))
        return len(rows)


class Store:
    """The one door to the database. Thread-safe; async callers use ``awrite``/``aread``."""

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 1000,
        write_retry_seconds: float = DEFAULT_WRITE_RETRY_SECONDS,
    ) -> None:
        self.url = engine_mod.normalize_url(url)
        self.engine = engine_mod.create_engine(self.url)
        self.dialect = self.engine.dialect.name
        self.batch_size = batch_size
        self.write_retry_seconds = write_retry_seconds
        # SQLite has one writer at a time anyway; queueing here beats busy-waiting.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._stopping = threading.Event()
        self._namespace: str | None = None

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, **kw: Any) -> Store:
        """Connect (and migrate unless told not to); a database that cannot be used is a
        one-line :class:`DatabaseUnavailable` or :class:`DatabaseRefused`."""
        store = cls(url, **kw)
        try:
            if migrate:
                store.migrate()
            else:
                store.ping()
        except (sa.exc.DBAPIError, sa.exc.NoSuchTableError) as exc:
            store.close()
            raise translate(exc, "open") from exc
        return store

    def ping(self) -> None:
        """One round trip: raises if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def migrate(self) -> None:
        engine_mod.upgrade(self.engine)

    def lock_namespace(self) -> str:
        """The database and schema this store writes to (advisory-lock keys include it)."""
        if self._namespace is None:
            self._namespace = self.read(engine_mod.lock_namespace)
        return self._namespace

    def is_current(self) -> bool:
        return engine_mod.current_revision(self.engine) == engine_mod.head_revision()

    def close(self) -> None:
        self.engine.dispose()

    # --- transactions -----------------------------------------------------------
    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one transaction; retry the whole of it while the database is away.

        A permanent error (read-only file, full disk, missing table or database) raises
        :class:`DatabaseRefused` at once; a transient one is retried for
        ``write_retry_seconds`` and then raises :class:`DatabaseUnavailable`; once
        :meth:`stop_retrying` was called a failing write raises :class:`StoreStopping`.
        """
        return self._retrying("write", lambda: self._locked_write(fn))

    def _locked_write(self, fn: Callable[[Tx], T]) -> T:
        if self._write_lock is None:
            return self._write_once(fn)
        with self._write_lock:
            return self._write_once(fn)

    def _write_once(self, fn: Callable[[Tx], T]) -> T:
        with self.engine.begin() as conn:
            return fn(Tx(conn, self.batch_size))

    def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` on a connection, retried like :meth:`write`."""

        def once() -> T:
            with self.engine.connect() as conn:
                return fn(conn)

        return self._retrying("read", once)

    def _retrying(self, doing: str, once: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.write_retry_seconds
        attempt = 0
        raced = False
        while True:
            attempt += 1
            try:
                return once()
            except sa.exc.DBAPIError as exc:
                if is_unique_violation(exc) and not raced:
                    # Every polytape write ignores or merges what is stored, or (trades) looks
                    # it up under a lock; a writer outside that raced this one. Once more sees it.
                    raced = True
                    log.info(f"db {doing} raced another writer; running it again", error=first_line(exc))
                    continue
                if is_permanent(exc):
                    raise translate(exc, doing) from exc
                transient = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
                if not (transient or exc.connection_invalidated):
                    raise StoreError(f"database {doing} failed: {first_line(exc)}") from exc
                if self._stopping.is_set():
                    raise StoreStopping(f"database {doing} abandoned (stopping): {first_line(exc)}") from exc
                if time.monotonic() >= deadline:
                    raise translate(exc, f"{doing} ({attempt} attempts)") from exc
                delay = min(5.0, 0.1 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2)
                if attempt == 1 or attempt % 10 == 0:  # one line per outage, then a reminder
                    log.warning(f"db {doing} retry", attempt=attempt, error=first_line(exc))
                if self._stopping.wait(delay):
                    raise StoreStopping(f"database {doing} abandoned (stopping): {first_line(exc)}") from exc

    def stop_retrying(self) -> None:
        """From now on a failing read or write gives up at once (polytape is stopping)."""
        self._stopping.set()

    async def awrite(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.to_thread(self.write, fn)

    async def aread(self, fn: Callable[[sa.Connection], T]) -> T:
        return await asyncio.to_thread(self.read, fn)

    # --- conveniences (each its own transaction) -----------------------------------
    def insert_ignore(self, table: sa.Table, rows: Sequence[Row]) -> int:
        return self.write(lambda tx: tx.insert_ignore(table, rows))

    def upsert(self, table: sa.Table, rows: Sequence[Row], **kw: Any) -> int:
        return self.write(lambda tx: tx.upsert(table, rows, **kw))

    def set_state(self, key: str, value: Any, now: datetime) -> None:
        self.write(lambda tx: tx.set_state(key, value, now))

    def get_state(self, key: str) -> Any:
        t = schema.sync_state
        return self.read(lambda c: c.execute(sa.select(t.c.value).where(t.c.key == key)).scalar())

    def reject(self, rows: Sequence[Row]) -> int:
        return self.write(lambda tx: tx.reject(rows))

    def count(self, table: sa.Table, *where: Any) -> int:
        stmt = sa.select(sa.func.count()).select_from(table)
        if where:
            stmt = stmt.where(*where)
        return int(self.read(lambda c: c.execute(stmt).scalar_one()))

    def fetch_all(self, stmt: Any) -> list[dict[str, Any]]:
        """Rows of a SELECT as plain dicts (used by tests, status and reports)."""
        return self.read(lambda c: [dict(r._mapping) for r in c.execute(stmt)])
