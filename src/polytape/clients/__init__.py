"""REST clients of the three Polymarket APIs, sharing one HTTP session and throttles.

I/O only: each method sends one request through :mod:`polytape.http` and returns the
decoded JSON (shape-checked); normalizing is :mod:`polytape.normalize`'s job. ``clob_ws``
is the WebSocket market channel. Imports: http, errors (and websockets/httpx, which only
this package and ``http/`` may import).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from polytape.clients.clob import ClobClient
from polytape.clients.data_api import DataApiClient
from polytape.clients.gamma import GammaClient
from polytape.http import HostThrottle, HttpConfig, HttpSession

__all__ = ["ApiClients", "ClobClient", "DataApiClient", "GammaClient", "open_clients"]


@dataclass
class ApiClients:
    """The three API clients and the session whose per-host throttles they share."""

    gamma: GammaClient
    data: DataApiClient
    clob: ClobClient
    session: HttpSession

    @property
    def throttles(self) -> dict[str, HostThrottle]:
        """Throttle of each client by name (``gamma``, ``data``, ``clob``)."""
        return {
            "gamma": self.gamma.http.throttle,
            "data": self.data.http.throttle,
            "clob": self.clob.http.throttle,
        }

    async def aclose(self) -> None:
        """Close every connection pool."""
        await self.session.aclose()

    async def __aenter__(self) -> ApiClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def open_clients(
    gamma_url: str,
    data_api_url: str,
    clob_url: str,
    config: HttpConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ApiClients:
    """Clients for the three base URLs; clients of the same host share one throttle."""
    session = HttpSession(config, transport=transport)
    return ApiClients(
        gamma=GammaClient(session.client(gamma_url, name="gamma")),
        data=DataApiClient(session.client(data_api_url, name="data")),
        clob=ClobClient(session.client(clob_url, name="clob")),
        session=session,
    )
