"""Data API client: trades (v1 offset feed and v2 cursor feed) and open interest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polytape.errors import ClientError, OffsetCapExceeded
from polytape.http import HttpClient, expect_dict, expect_list

OFFSET_CAP_MARKER = "max historical activity offset"
OI_BATCH = 50  # condition ids per /oi request, to keep the URL short
# Size caps per endpoint, far above the largest real page (500 trades are about 0.4 MB,
# 100 /oi rows about 15 kB) and far below POLYTAPE_HTTP_MAX_RESPONSE_MB: a hostile page
# of junk is refused while it is read, before it is decoded.
TRADES_MAX_BYTES = 8_000_000
OI_MAX_BYTES = 2_000_000


class DataApiClient:
    """Endpoints of ``data-api.polymarket.com``; returns decoded JSON, parses nothing."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def trades(
        self,
        *,
        limit: int,
        offset: int,
        taker_only: bool = True,
        filter_type: str | None = None,
        filter_amount: float | None = None,
        market: Sequence[str] | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> list[dict[str, Any]]:
        """One page of ``/trades``, newest first.

        Raises :class:`OffsetCapExceeded` when the API refuses ``offset`` as past its
        historical cap: stop paging there and narrow the ``start``/``end`` window instead.
        """
        params = {
            "limit": limit,
            "offset": offset,
            "takerOnly": taker_only,
            "filterType": filter_type,
            "filterAmount": filter_amount,
            "market": ",".join(market) if market else None,
            "start": start,
            "end": end,
        }
        try:
            data = await self.http.get_json("/trades", params, max_bytes=TRADES_MAX_BYTES)
        except ClientError as exc:
            if exc.status == 400 and OFFSET_CAP_MARKER in f"{exc.detail} {exc.body}".lower():
                raise OffsetCapExceeded(str(exc), url=exc.url, status=exc.status, body=exc.body) from exc
            raise
        return expect_list(data, self.http.url("/trades"))

    async def trades_v2(
        self,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        condition: str | Sequence[str] | None = None,
        taker_only: bool = True,
        filter_type: str | None = None,
        filter_amount: float | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``/v2/trades``: the rows and the next cursor (None at the end)."""
        path = "/v2/trades"
        if condition is not None and not isinstance(condition, str):
            condition = ",".join(condition)
        params = {
            "cursor": cursor,
            "limit": limit,
            "condition": condition,
            "taker_only": taker_only,
            "filter_type": filter_type,
            "filter_amount": filter_amount,
        }
        page = expect_dict(
            await self.http.get_json(path, params, max_bytes=TRADES_MAX_BYTES), self.http.url(path)
        )
        rows = expect_list(page.get("data") or [], self.http.url(path))
        pagination = page.get("pagination") or {}
        next_cursor = pagination.get("next_cursor") if isinstance(pagination, dict) else None
        if not next_cursor or pagination.get("has_more") is False:
            return rows, None
        return rows, str(next_cursor)

    async def open_interest(self, condition_ids: Sequence[str]) -> list[dict[str, Any]]:
        """``/oi`` rows ``{"market", "value"}`` for the given markets (batched, merged)."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(condition_ids), OI_BATCH):
            batch = ",".join(condition_ids[start : start + OI_BATCH])
            data = await self.http.get_json("/oi", {"market": batch}, max_bytes=OI_MAX_BYTES)
            rows.extend(expect_list(data, self.http.url("/oi")))
        return rows
