"""The CLI skeleton: every command has --help; db upgrade and track work."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import typer
from typer.testing import CliRunner

from polytape import cli
from polytape.jobs.registry import SCHEDULED_JOBS
from tests.support.procs import polytape_env

COMMANDS = [
    ["run"], ["job"], ["backfill", "trades"], ["backfill", "markets"], ["track", "add"],
    ["track", "remove"], ["track", "list"], ["status"], ["db", "upgrade"], ["simulate"],
    ["signals", "tail"], ["signals", "list"], ["replay", "book"], ["export"], ["coverage"],
]  # fmt: skip


def polytape(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polytape", *args],
        cwd=cwd, env=polytape_env(minimal=True, **(env or {})),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_db_upgrade_and_track(tmp_path: Path) -> None:
    proc = polytape("db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "polytape.db").exists()
    added = polytape("track", "add", "0xabc", "0xdef", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    # published at once (a running feed polls the version), not at the next scheduled refresh
    assert "universe version 1: 2 market(s)" in added.stdout
    listed = polytape("track", "list", cwd=tmp_path)
    assert "0xabc" in listed.stdout and "0xdef" in listed.stdout and "manual" in listed.stdout
    removed = polytape("track", "remove", "0xabc", cwd=tmp_path)
    assert removed.returncode == 0 and "universe version 2: 1 market(s)" in removed.stdout
    assert "0xabc" not in polytape("track", "list", cwd=tmp_path).stdout


def test_unknown_job_is_usage_error(tmp_path: Path) -> None:
    proc = polytape("job", "sync-everything", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown job" in proc.stderr


def test_simulate_prints_urls_that_answer(tmp_path: Path) -> None:
    import json
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "polytape", "simulate", "--seed", "5", "--markets", "10", "--static"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        urls = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(4))
        assert set(urls) == {
            "POLYTAPE_GAMMA_URL", "POLYTAPE_DATA_API_URL", "POLYTAPE_CLOB_URL", "POLYTAPE_CLOB_WS_URL",
        }  # fmt: skip
        assert urls["POLYTAPE_CLOB_WS_URL"].startswith("ws://127.0.0.1:")
        with urllib.request.urlopen(urls["POLYTAPE_GAMMA_URL"] + "/events/keyset?limit=5", timeout=10) as r:
            page = json.load(r)
        assert len(page["events"]) == 5 and page["next_cursor"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_simulate_rejects_unknown_fault_profile(tmp_path: Path) -> None:
    proc = polytape("simulate", "--faults", "apocalypse", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown fault profile" in proc.stderr


def test_track_add_refuses_past_the_cap(tmp_path: Path) -> None:
    env = {"POLYTAPE_MAX_TRACKED_MARKETS": "2"}
    assert polytape("track", "add", "0xa", "0xb", cwd=tmp_path, env=env).returncode == 0
    proc = polytape("track", "add", "0xc", cwd=tmp_path, env=env)
    assert proc.returncode == 1
    assert "exceed the universe cap of 2" in proc.stderr
    assert "0xc" not in polytape("track", "list", cwd=tmp_path, env=env).stdout


def test_database_url_after_the_command(tmp_path: Path) -> None:
    proc = polytape("status", "--database-url", f"sqlite:///{tmp_path / 'other.db'}", cwd=tmp_path)
    assert proc.returncode == 1  # no database there: status reports it and creates nothing
    assert f"no database at {tmp_path / 'other.db'}" in proc.stdout
    assert not (tmp_path / "other.db").exists()
    assert not (tmp_path / "polytape.db").exists()


# --- in-process: Typer's runner ----------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """An in-process command configures logging onto the runner's stream (closed after)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def leaf_commands() -> list[tuple[list[str], Any]]:
    """Every command of ``polytape`` with its words (``["backfill", "trades"]``)."""
    found: list[tuple[list[str], Any]] = []

    def walk(words: list[str], command: Any) -> None:
        if hasattr(command, "commands"):  # a group (Typer ships its own click)
            for name, sub in command.commands.items():
                walk([*words, name], sub)
        else:
            found.append((words, command))

    walk([], typer.main.get_command(cli.app))
    return found


def test_every_documented_command_exists() -> None:
    assert {" ".join(words) for words, _ in leaf_commands()} >= {" ".join(c) for c in COMMANDS}


@pytest.mark.parametrize("words", [w for w, _ in leaf_commands()], ids=" ".join)
def test_help(words: list[str]) -> None:
    result = runner.invoke(cli.app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("words", "command"), leaf_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_every_command_takes_database_url_and_config(words: list[str], command: Any) -> None:
    options = {opt for param in command.params for opt in param.opts}
    assert {"--database-url", "--config"} <= options, words


def test_database_url_and_config_after_any_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "after.db"
    assert runner.invoke(cli.app, ["db", "upgrade", "--database-url", f"sqlite:///{db}"]).exit_code == 0
    assert db.exists() and not (tmp_path / "polytape.db").exists()
    listed = runner.invoke(cli.app, ["signals", "list", "--database-url", f"sqlite:///{db}"])
    assert listed.exit_code == 0, listed.output
    assert "0 signal(s)" in listed.output
    other = tmp_path / "from-config.db"
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'database_url = "sqlite:///{other}"\n')
    assert runner.invoke(cli.app, ["track", "list", "--config", str(config)]).exit_code == 0
    assert other.exists() and not (tmp_path / "polytape.db").exists()


def test_status_json_says_the_same_as_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    missing = runner.invoke(cli.app, ["status", "--json", "--database-url", url])
    assert missing.exit_code == 1
    report = json.loads(missing.stdout)
    assert report["verdict"] == "unhealthy" and "no database at" in report["problems"][0]
    assert runner.invoke(cli.app, ["db", "upgrade", "--database-url", url]).exit_code == 0
    table = runner.invoke(cli.app, ["status", "--database-url", url], env={"COLUMNS": "200"})
    result = runner.invoke(cli.app, ["status", "--json", "--database-url", url])
    assert (result.exit_code, table.exit_code) == (1, 1)  # nothing ran yet: unhealthy
    report = json.loads(result.stdout)
    assert report["verdict"] == "unhealthy" and report["healthy"] is False
    jobs = {j["name"]: j for j in report["jobs"]}
    assert jobs["sync-gamma-events"]["status"] == "never" and jobs["sync-gamma-events"]["late"]
    assert set(jobs) == set(SCHEDULED_JOBS)
    assert "sync-gamma-events has never run" in report["problems"]
    for problem in report["problems"]:
        assert problem in table.stdout
    assert report["feed"] is None and report["store"]["trades"] == 0


def test_status_lists_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from polytape.store import Store
    from polytape.store.workers import lease_round, register_worker

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store.open(url)
    now = datetime.now(UTC)
    register_worker(store, "host-a:101:abc", now, pid=101)
    lease_round(store, "host-a:101:abc", ["t1", "t2", "t3"], now, ttl=10)
    register_worker(store, "host-b:202:def", now, pid=202, feed=False)
    store.close()
    report = json.loads(runner.invoke(cli.app, ["status", "--json", "--database-url", url]).stdout)
    workers = {w["worker_id"]: w for w in report["workers"]}
    assert workers["host-a:101:abc"]["tokens"] == 3 and workers["host-a:101:abc"]["pid"] == 101
    assert workers["host-a:101:abc"]["alive"] is True and workers["host-b:202:def"]["tokens"] == -1
    table = runner.invoke(cli.app, ["status", "--database-url", url], env={"COLUMNS": "200"})
    assert "host-a:101:abc" in table.stdout and "feed off" in table.stdout
