"""Engines and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from polytape.errors import ConfigError

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def normalize_url(url: str) -> str:
    """Map the URL forms users type to the driver polytape ships (psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_file(url: str) -> str | None:
    """The file a ``sqlite:///`` URL names, or None for other databases."""
    parsed = sa.engine.make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database


def create_engine(url: str) -> sa.Engine:
    """An engine tuned for polytape's workload on either backend."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        # LIFO: writes reuse the connection whose page cache is warm (FIFO rotated through
        # the pool and each connection grew its own cache of the same pages: at venue scale
        # that was several hundred MB of duplicate cache)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=True,
            pool_use_lifo=True,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql+psycopg"):
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            pool_recycle=1800,
            connect_args={"connect_timeout": 10, "application_name": "polytape"},
        )
    raise ConfigError(f"bad setting POLYTAPE_DATABASE_URL={url!r}: unsupported database")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-32768")  # 32 MiB page cache per connection
    # Checkpoint every 10,000 WAL pages (~40 MB) instead of 1,000: random index pages
    # (trades by market, books by token) are rewritten by many small commits, and each
    # checkpoint copies a page once and syncs the file; about +30% trade inserts per commit.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.close()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    return cfg


def lock_namespace(conn: sa.Connection) -> str:
    """``database/schema`` on PostgreSQL (what advisory-lock keys are scoped to); else ``""``."""
    if conn.dialect.name != "postgresql":
        return ""
    row = conn.execute(sa.text("SELECT current_database(), current_schema()")).one()
    return f"{row[0]}/{row[1]}"


def lock_key(name: str, namespace: str = "") -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``, distinct per namespace."""
    digest = hashlib.sha256(f"polytape:{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent).

    On PostgreSQL the migration runs under a transaction-level advisory lock, so
    workers that start together wait for one another instead of racing to create
    the same tables; a waiter then finds the schema current and does nothing.
    """
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            key = lock_key("migrate", lock_namespace(conn))
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
