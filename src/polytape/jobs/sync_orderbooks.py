"""``sync-orderbooks``: the polling fallback when the WebSocket feed is off.

For every tracked token, fetch the book over REST (``POST /books`` in batches of
``books_batch_size``, ``GET /book`` per token when a batch is refused) and replace the
stored book; the CLOB's ``neg_risk`` wins over Gamma's. Tokens without a book (404, or
absent from ``/books``) are noted, not errors.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from polytape.bookfeed.rest import fetch_books
from polytape.books import OrderBook
from polytape.ingest.rejects import cap_and_log
from polytape.jobs.base import JobContext, JobResult
from polytape.jobs.refresh_universe import ensure_universe
from polytape.normalize import Rejected
from polytape.store.books import BookWrite, write_books
from polytape.store.core import Tx
from polytape.store.runs import rejected_row
from polytape.store.universe import tracked_tokens

log = structlog.get_logger("polytape.jobs.sync_orderbooks")

SOURCE = "clob.book"


async def run(ctx: JobContext) -> JobResult:
    """Fetch and store the current book of every tracked token."""
    await ensure_universe(ctx)
    tokens = await asyncio.to_thread(tracked_tokens, ctx.store)
    result = JobResult()
    result.details["tokens"] = len(tokens)
    if not tokens:
        result.partial("no tracked tokens")
        return result
    got = await fetch_books(ctx.clients.clob, list(tokens), ctx.settings.books_batch_size)
    now = ctx.clock()
    batch = BookWrite()
    items = [Rejected(SOURCE, r.reason, r.raw) for r in got.rejected]
    items = cap_and_log(log, "book payload rejected", items, len(items) + len(got.books))
    rejects = [rejected_row(r.source, r.reason, r.raw, now) for r in [*got.bad_answers, *items]]
    corrupted = 0
    archive = ctx.runtime.archive
    for token_id, msg in got.books.items():
        book = OrderBook(token_id, tokens.get(token_id, msg.market))
        try:
            book.apply_snapshot(msg, now, source="rest")
        except ValueError as exc:
            rejects.append(rejected_row(SOURCE, f"absurd /book: {exc}", msgspec.to_builtins(msg), now))
            continue
        if ctx.settings.ws_verify_hashes and book.verify(msg.hash) == "corrupted":
            corrupted += 1
        if archive is not None:
            archive.record_book(book, now, "poll")
        batch.add(book, now)

    def write(tx: Tx) -> int:
        tx.reject(rejects)
        return write_books(tx, batch, now)

    levels = await ctx.store.awrite(write)
    result.rows_written = len(batch.rows)
    result.details.update(
        books=len(batch.rows),
        levels=levels,
        no_book=len(got.missing),
        rejected=len(got.rejected) + len(got.bad_answers),
        hash_mismatches=corrupted,
        fallback_batches=got.fallback_batches,
    )
    if got.missing:
        log.info("tokens without an order book", count=len(got.missing), sample=got.missing[:3])
    if got.failed:
        result.partial(f"{len(got.failed)} books not fetched: {got.errors[0]}")
    if rejects:
        result.partial(f"{len(got.rejected) + len(got.bad_answers)} book payloads rejected")
    return result
