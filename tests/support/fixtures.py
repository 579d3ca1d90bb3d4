"""Recorded payloads (``tests/fixtures``), read one way everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_text(name: str) -> str:
    """The raw text of ``tests/fixtures/NAME``."""
    return (FIXTURES / name).read_text()


def fixture_json(name: str) -> Any:
    """The decoded JSON of ``tests/fixtures/NAME``."""
    return json.loads(fixture_text(name))
