"""Issue 12 items 8 and 9: permanent database errors fail at once; transient ones are retried;
connection failures and malformed URLs are one line with the right exit code."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from polytape.errors import DatabaseRefused, DatabaseUnavailable, StoreStopping
from polytape.store import Store
from tests.conftest import PG_URL
from tests.support.procs import polytape_env

NOW = datetime(2026, 11, 1, tzinfo=UTC)
PATIENT = 3600.0  # a retry window no test would outlast: the error must come at once


def _write_in_thread(store: Store) -> BaseException:
    """Attempt one write; the error it raised (a hang past 60 s fails the test)."""
    box: dict[str, BaseException] = {}

    def go() -> None:
        try:
            store.set_state("k", {"v": 1}, NOW)
        except BaseException as exc:
            box["exc"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        store.stop_retrying()
        thread.join(10)
        raise AssertionError("a permanent error was retried")
    assert "exc" in box, "the write succeeded"
    return box["exc"]


def test_read_only_sqlite_file_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    Store.open(f"sqlite:///{path}").close()
    store = Store(f"sqlite:///file:{path}?mode=ro&uri=true", write_retry_seconds=PATIENT)
    try:
        exc = _write_in_thread(store)
    finally:
        store.close()
    assert isinstance(exc, DatabaseRefused) and "readonly" in str(exc)


def test_full_sqlite_disk_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    Store.open(f"sqlite:///{path}").close()
    store = Store(f"sqlite:///{path}", write_retry_seconds=PATIENT)

    @sa.event.listens_for(store.engine, "connect")
    def _tiny(dbapi_conn: Any, _record: Any) -> None:  # the file may not grow: a full disk
        dbapi_conn.execute("PRAGMA max_page_count=1")

    try:
        store.engine.dispose()
        big = [{"source": "t", "received_at": NOW, "reason": "x", "raw": "y" * 100_000}]
        box: dict[str, BaseException] = {}
        thread = threading.Thread(target=lambda: _catch(box, lambda: store.reject(big)), daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "a full disk was retried"
    finally:
        store.stop_retrying()
        store.close()
    assert isinstance(box.get("exc"), DatabaseRefused) and "full" in str(box["exc"])


def _catch(box: dict[str, BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as exc:
        box["exc"] = exc


def test_missing_table_fails_at_once(db_url: str) -> None:
    store = Store.open(db_url, write_retry_seconds=PATIENT)
    try:
        store.write(lambda tx: tx.execute(sa.text("DROP TABLE sync_state")))
        exc = _write_in_thread(store)
    finally:
        store.close()
    assert isinstance(exc, DatabaseRefused)
    assert "no such table" in str(exc) or "does not exist" in str(exc)


def test_unreachable_database_is_retried_then_reported(tmp_path: Path) -> None:
    store = Store("postgresql://postgres@127.0.0.1:9/test", write_retry_seconds=0.5)
    try:
        with pytest.raises(DatabaseUnavailable, match=r"attempts\) failed: .*127\.0\.0\.1"):
            store.set_state("k", 1, NOW)
        store.stop_retrying()
        store.write_retry_seconds = PATIENT
        with pytest.raises(StoreStopping):
            store.set_state("k", 1, NOW)
    finally:
        store.close()


def test_transient_sqlite_lock_is_retried(tmp_path: Path) -> None:
    """A locked file is not permanent: the write waits for the lock and then succeeds."""
    path = tmp_path / "busy.db"
    store = Store.open(f"sqlite:///{path}")
    holder = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    conn = holder.connect()
    conn.exec_driver_sql("BEGIN EXCLUSIVE")
    timer = threading.Timer(1.0, lambda: (conn.rollback(), conn.close()))
    timer.start()
    try:
        store.set_state("k", {"v": 2}, NOW)
    finally:
        timer.join()
        holder.dispose()
    assert store.get_state("k") == {"v": 2}
    store.close()


# --- the CLI ---------------------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = polytape_env()
    env["POLYTAPE_DATABASE_URL"] = db
    return subprocess.run(
        [sys.executable, "-m", "polytape", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _base() -> str:
    return PG_URL.rsplit("/", 1)[0]


def _pg_up() -> bool:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


CASES = [
    ("postgresql://postgres@127.0.0.1:9/test", 1, "Connection refused"),
    ("postgresql://postgres@polytape-no-such-host.invalid:5432/test", 1, "polytape-no-such-host.invalid"),
    ("postgresql://postgres@127.0.0.1:notaport/test", 2, "port is not a number"),
    ("postgresql://postgres@127.0.0.1:5432", 2, "names no database"),
    ("sqlite://", 2, "names no file"),
    ("sqlite:///", 2, "names no file"),
]


@pytest.mark.parametrize("command", [["job", "sync-large-trades"], ["status"], ["run"]])
@pytest.mark.parametrize(("url", "code", "needle"), CASES)
def test_connection_failures_are_one_line(
    tmp_path: Path, command: list[str], url: str, code: int, needle: str
) -> None:
    proc = _cli(tmp_path, *command, db=url)
    lines = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if ln.strip()]
    assert proc.returncode == code, proc.stderr + proc.stdout
    assert len(lines) == 1 and needle in lines[0], lines
    assert "Traceback" not in proc.stderr


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("suffix", "needle"),
    [("/polytape_no_such_db", 'database "polytape_no_such_db" does not exist')],
)
def test_missing_database_and_role_are_one_line(tmp_path: Path, suffix: str, needle: str) -> None:
    if not _pg_up():
        pytest.skip("PostgreSQL not reachable")
    role = _base().replace("postgres@", "polytape_no_such_role@") + "/test"
    for url, text in ((_base() + suffix, needle), (role, 'role "polytape_no_such_role" does not exist')):
        for command in (["job", "sync-large-trades"], ["status"], ["run"]):
            proc = _cli(tmp_path, *command, db=url)
            lines = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if ln.strip()]
            assert proc.returncode == 1 and len(lines) == 1 and text in lines[0], lines


def test_status_reports_a_missing_sqlite_file_without_creating_it(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "status", db="sqlite:///nowhere.db")
    assert proc.returncode == 1 and "no database at nowhere.db" in proc.stdout
    assert not (tmp_path / "nowhere.db").exists()


def test_status_says_database_unreachable_not_run_dead(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "status", db="postgresql://postgres@127.0.0.1:9/test")
    assert proc.returncode == 1
    assert "database unreachable" in proc.stdout and "not running" not in proc.stdout


def test_job_on_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    Store.open(f"sqlite:///{path}").close()
    proc = _cli(tmp_path, "job", "sync-large-trades", db=f"sqlite:///file:{path}?mode=ro&uri=true")
    lines = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "readonly" in lines[0], lines
