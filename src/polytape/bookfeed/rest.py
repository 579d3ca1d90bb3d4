"""REST order-book snapshots for many tokens: ``POST /books`` in batches, ``GET /book`` fallback.

Shared by the ``sync_orderbooks`` job (the polling mode) and the WebSocket feed's healer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from polytape import normalize
from polytape.clients.clob import ClobClient
from polytape.errors import ApiError, ClientError, PayloadError
from polytape.ingest.rejects import bad_answer
from polytape.normalize.books import BookMsg, Rejected, parse_rest_book

log = structlog.get_logger("polytape.books.rest")

FALLBACK_CONCURRENCY = 8


@dataclass
class RestBooks:
    """What one fetch got: parsed books by token, tokens without a book, bad payloads, failures."""

    books: dict[str, BookMsg] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fallback_batches: int = 0
    bad_answers: list[normalize.Rejected] = field(default_factory=list)
    """Whole answers that could not be used (not JSON, over the size cap), each kept once."""


async def fetch_books(clob: ClobClient, token_ids: Sequence[str], batch_size: int) -> RestBooks:
    """Books of ``token_ids``: one ``POST /books`` per batch; a batch the API refuses (4xx)
    is fetched token by token with ``GET /book``. Never raises for API failures: tokens
    of a failed batch land in ``failed`` with the error in ``errors``."""
    out = RestBooks()
    wanted = list(dict.fromkeys(token_ids))
    for start in range(0, len(wanted), batch_size):
        batch = wanted[start : start + batch_size]
        try:
            raw = await clob.books(batch, batch_size=len(batch))
        except ClientError as exc:
            log.warning("POST /books refused; GET /book instead", status=exc.status, detail=exc.detail)
            out.fallback_batches += 1
            raw = await _one_by_one(clob, batch, out)
        except (ApiError, PayloadError) as exc:
            out.failed.extend(batch)
            out.errors.append(f"POST /books: {type(exc).__name__}: {exc}")
            kept = bad_answer(exc, "clob.books")
            if kept is not None:
                out.bad_answers.append(kept)
            continue
        _collect(batch, raw, out)
    return out


async def _one_by_one(clob: ClobClient, batch: Sequence[str], out: RestBooks) -> list[Any]:
    gate = asyncio.Semaphore(FALLBACK_CONCURRENCY)

    async def one(token_id: str) -> Any:
        async with gate:
            try:
                return await clob.book(token_id)
            except (ApiError, PayloadError) as exc:
                out.failed.append(token_id)
                out.errors.append(f"GET /book {token_id}: {type(exc).__name__}: {exc}")
                return None

    got = await asyncio.gather(*(one(t) for t in batch))
    return [g for g in got if g is not None]


def _collect(batch: Sequence[str], raw: list[Any], out: RestBooks) -> None:
    asked = set(batch)
    for item in raw:
        parsed = parse_rest_book(item)
        if isinstance(parsed, Rejected):
            out.rejected.append(parsed)
        elif parsed.asset_id in asked:
            out.books[parsed.asset_id] = parsed
    failed = set(out.failed)
    out.missing.extend(t for t in batch if t not in out.books and t not in failed)
