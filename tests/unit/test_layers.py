"""Which package may import which (README "Architecture"), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "polytape"

# package (or module) -> polytape packages it must never import, directly or inside functions
FORBIDDEN: dict[str, set[str]] = {
    "jobs": {"app", "runner", "cli", "backfill", "status"},
    "backfill": {"jobs", "runner", "cli"},
    "ingest": {"jobs", "backfill", "app", "runner", "cli"},
    "paging": {"jobs", "backfill", "ingest", "app", "runner", "cli", "store", "clients", "http"},
    "normalize": {"jobs", "backfill", "ingest", "app", "runner", "cli", "store", "clients", "http"},
    "clients": {"jobs", "backfill", "ingest", "app", "runner", "cli", "store", "normalize"},
    "store": {"jobs", "backfill", "ingest", "app", "runner", "cli", "clients", "http"},
    "runtime": {"jobs", "backfill", "ingest", "app", "runner", "cli"},
}


def imported(path: Path) -> set[str]:
    """The polytape subpackages/modules a file imports (``polytape.x.y`` -> ``x``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "polytape" and len(parts) > 1:
                out.add(parts[1])
    return out


def files_of(room: str) -> list[Path]:
    package = SRC / room
    return sorted(package.rglob("*.py")) if package.is_dir() else [SRC / f"{room}.py"]


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_room_imports_stay_in_bounds(room: str) -> None:
    files = files_of(room)
    assert files and all(f.exists() for f in files)
    bad = {f"{f.relative_to(SRC)} imports polytape.{m}" for f in files for m in imported(f) & FORBIDDEN[room]}
    assert not bad, sorted(bad)


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import polytape.jobs.base\ndef f():\n    from polytape.app import job_context\n")
    assert imported(sample) == {"jobs", "app"}
