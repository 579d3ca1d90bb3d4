"""The CLI skeleton: every command has --help; db upgrade and track work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    ["run"], ["job"], ["backfill", "trades"], ["backfill", "markets"], ["track", "add"],
    ["track", "remove"], ["track", "list"], ["status"], ["db", "upgrade"], ["simulate"],
    ["signals", "tail"], ["signals", "list"],
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
