"""The CLI skeleton: every command has --help; db upgrade and track work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    ["run"], ["job"], ["backfill", "trades"], ["backfill", "markets"], ["track", "add"],
    ["track", "remove"], ["track", "list"], ["status"], ["db", "upgrade"], ["simulate"],
    ["signals", "tail"], ["signals", "list"], ["replay", "book"], ["export"], ["coverage"],
]  # fmt: skip


def polytape(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polytape", *args],
        cwd=cwd, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help(cmd: list[str], tmp_path: Path) -> None:
    proc = polytape(*cmd, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout


def test_db_upgrade_and_track(tmp_path: Path) -> None:
    proc = polytape("db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "polytape.db").exists()
    assert polytape("track", "add", "0xabc", "0xdef", cwd=tmp_path).returncode == 0
    listed = polytape("track", "list", cwd=tmp_path)
    assert "0xabc" in listed.stdout and "0xdef" in listed.stdout and "manual" in listed.stdout
    assert polytape("track", "remove", "0xabc", cwd=tmp_path).returncode == 0
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
