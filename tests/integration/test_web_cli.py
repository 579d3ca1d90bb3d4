"""``polytape web`` as a user runs it: a subprocess on loopback, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from polytape.store import Store

POLYTAPE = [sys.executable, "-m", "polytape"]


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith("POLYTAPE_") or k.startswith("POLYTAPE_TEST_")
    }


def test_polytape_web_serves_until_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    Store.open(url).close()  # a migrated, empty database
    proc = subprocess.Popen(
        [*POLYTAPE, "web", "--database-url", url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("polytape dashboard on http://127.0.0.1:"), line
        base = line.split()[3]
        with urllib.request.urlopen(base + "/api/status", timeout=30) as resp:
            status = json.loads(resp.read())
        assert status["healthy"] is False and status["jobs"]
        with urllib.request.urlopen(base + "/", timeout=30) as resp:
            assert b'data-page="overview"' in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""


def test_polytape_web_on_an_unmigrated_database_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").touch()
    done = subprocess.run(
        [*POLYTAPE, "web", "--database-url", url, "--port", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "polytape db upgrade" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
