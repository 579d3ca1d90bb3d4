"""Integration fixtures: a started simulator on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polytape.sim import SimServer


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    """A started ``SimServer(seed=7)`` on ephemeral ports, stopped afterwards."""
    server = SimServer(seed=7)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
