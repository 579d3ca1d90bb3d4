"""CLOB REST client: order-book snapshots (raw payloads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polytape.errors import ClientError
from polytape.http import HttpClient, expect_dict, expect_list

BOOKS_BATCH = 500  # the API's maximum of tokens per POST /books
# Size caps per endpoint: a deep real book is about 40 kB, so 500 of them stay far below.
BOOK_MAX_BYTES = 2_000_000
BOOKS_MAX_BYTES = 32_000_000


class ClobClient:
    """Market-data endpoints of ``clob.polymarket.com``; returns decoded JSON."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def book(self, token_id: str) -> dict[str, Any] | None:
        """``/book`` of one token, or None when the API says no order book exists for it."""
        try:
            data = await self.http.get_json("/book", {"token_id": token_id}, max_bytes=BOOK_MAX_BYTES)
        except ClientError as exc:
            if exc.status == 404 and "no orderbook" in exc.detail.lower():
                return None
            raise
        return expect_dict(data, self.http.url("/book"))

    async def books(self, token_ids: Sequence[str], *, batch_size: int = BOOKS_BATCH) -> list[dict[str, Any]]:
        """Books of many tokens via ``POST /books``, ≤ ``batch_size`` per request, merged.

        Tokens without a book are simply absent; match results on ``asset_id``, not order.
        """
        if not 1 <= batch_size <= BOOKS_BATCH:
            raise ValueError(f"batch_size must be 1..{BOOKS_BATCH}")
        books: list[dict[str, Any]] = []
        for start in range(0, len(token_ids), batch_size):
            books.extend(await self._books_batch(token_ids[start : start + batch_size]))
        return books

    async def _books_batch(self, token_ids: Sequence[str]) -> list[dict[str, Any]]:
        body = [{"token_id": token_id} for token_id in token_ids]
        return expect_list(
            await self.http.post_json("/books", body, max_bytes=BOOKS_MAX_BYTES), self.http.url("/books")
        )
