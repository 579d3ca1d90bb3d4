"""Gamma API client: events, markets, tags and sports metadata (raw payloads)."""

from __future__ import annotations

from typing import Any

from polytape.errors import PayloadError
from polytape.http import HttpClient, expect_dict, expect_list

# A page of 500 events with their markets is a few MB; anything near the global cap is junk.
PAGE_MAX_BYTES = 24_000_000


class GammaClient:
    """Endpoints of ``gamma-api.polymarket.com``; returns decoded JSON, parses nothing."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def events_keyset(
        self, *, limit: int, after_cursor: str | None = None, **filters: Any
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``/events/keyset``: the events and the next cursor (None at the end)."""
        path = "/events/keyset"
        params = {**filters, "limit": limit, "after_cursor": after_cursor}
        page = expect_dict(
            await self.http.get_json(path, params, max_bytes=PAGE_MAX_BYTES), self.http.url(path)
        )
        events = expect_list(page.get("events", []), self.http.url(path))
        next_cursor = page.get("next_cursor") or None
        if next_cursor is not None and next_cursor == after_cursor:
            # A wrong cursor parameter silently restarts at page one; never loop on it.
            raise PayloadError(f"{self.http.url(path)} returned the cursor it was given: {after_cursor!r}")
        return events, None if next_cursor is None else str(next_cursor)

    async def events(self, *, limit: int, offset: int, **filters: Any) -> list[dict[str, Any]]:
        """One page of the legacy offset list ``/events`` (booleans sent as ``true``/``false``)."""
        return await self._list("/events", {**filters, "limit": limit, "offset": offset})

    async def markets(self, **params: Any) -> list[dict[str, Any]]:
        """``/markets`` with the given query parameters (lists are sent as repeated keys)."""
        return await self._list("/markets", params)

    async def tags(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """One page of ``/tags``."""
        return await self._list("/tags", {"limit": limit, "offset": offset})

    async def sports(self) -> list[dict[str, Any]]:
        """``/sports``: sports metadata with their tag ids."""
        return await self._list("/sports", None)

    async def _list(self, path: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
        return expect_list(
            await self.http.get_json(path, params, max_bytes=PAGE_MAX_BYTES), self.http.url(path)
        )
