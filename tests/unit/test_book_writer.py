"""The feed's book writer: a flush round is capped in level rows and the next resumes
where it stopped; the final flush writes everything (both engines)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from polytape.bookfeed import writer as writer_mod
from polytape.bookfeed.keeper import BookKeeper
from polytape.bookfeed.writer import BookWriter
from polytape.books import BookRegistry
from polytape.normalize.books import BookMsg, Level
from polytape.store import Store
from polytape.store.schema import orderbook_levels, orderbooks

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _keeper(n_books: int, levels: int) -> BookKeeper:
    registry = BookRegistry()
    for i in range(n_books):
        token = str(10**40 + i)
        registry.track(token, f"0x{i:04x}")
        bids = [Level(f"{(100 + k) / 1000:.3f}", "10") for k in range(levels)]
        asks = [Level(f"{(900 - k) / 1000:.3f}", "10") for k in range(levels)]
        book = registry.ensure(token, f"0x{i:04x}")
        book.apply_snapshot(
            BookMsg(book.condition_id, token, "1790658661000", bids, asks, tick_size="0.001"), NOW
        )
    return BookKeeper(registry, verify=False)


def test_capped_rounds_resume_and_cover_every_book(store: Store) -> None:
    keeper = _keeper(30, 5)  # 10 levels a book
    writer = BookWriter(store, keeper, lambda: NOW, lambda now: {}, max_levels=45)
    per_round = []
    for _ in range(6):
        result = asyncio.run(writer.flush())
        per_round.append(result.levels)
    assert per_round[:6] == [50, 50, 50, 50, 50, 50]  # 5 books a round (the 5th crosses the cap)
    assert store.count(orderbooks) == 30
    assert store.count(orderbook_levels) == 300
    assert asyncio.run(writer.flush()).books == 0  # nothing left
    # a change to every book, then the final (forced) flush: one round, no cap
    for book in keeper.registry.books.values():
        book.apply_change("BUY", "0.100", "0")
    final = asyncio.run(writer.flush(force_health=True))
    assert (final.books, final.levels) == (30, 30)
    assert store.count(orderbook_levels, orderbook_levels.c.price == 0.1) == 0


def test_capped_rounds_do_not_starve_late_books(store: Store) -> None:
    keeper = _keeper(12, 2)  # 4 levels a book
    writer = BookWriter(store, keeper, lambda: NOW, lambda now: {}, max_levels=8)
    asyncio.run(writer.flush(force_health=True))  # all stored
    seen: set[str] = set()
    writer.on_flush = lambda at, stamps: seen.update(stamps)
    for _ in range(6):  # every book changes before every round: only a cursor reaches all
        for book in keeper.registry.books.values():
            book.apply_change("SELL", "0.900", "11")
        asyncio.run(writer.flush())
    assert seen == set(keeper.registry.books)
    stored = store.fetch_all(sa.select(orderbook_levels.c.size).where(orderbook_levels.c.price == 0.9))
    assert [r["size"] for r in stored] == [11.0] * 12


def test_a_long_round_yields_and_skips_books_removed_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a round of many books gives the event loop turns (sockets, the archive)
    in between; a token that leaves the universe during one is deleted, not written."""
    monkeypatch.setattr(writer_mod, "SLICE_SECONDS", 0.0)  # yield at every chance (256 books)
    keeper = _keeper(1000, 1)
    writer = BookWriter(store, keeper, lambda: NOW, lambda now: {})
    asyncio.run(writer.flush(force_health=True))
    first, last = sorted(keeper.registry.books)[0], sorted(keeper.registry.books)[-1]
    for book in keeper.registry.books.values():
        book.apply_change("BUY", "0.100", "5")
    turns = []

    async def main() -> None:
        async def other() -> None:
            while True:
                turns.append(1)
                if len(turns) == 1:  # the feed drops two tokens mid-round, as _remove does
                    for token in (first, last):
                        writer.last_written.pop(token, None)
                        keeper.forget(token)
                    writer.removed.update({first, last})
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        turns.clear()
        result = await writer.flush()
        task.cancel()
        assert len(turns) >= 3  # 1,000 books: a turn every 256
        assert result.books == 998

    asyncio.run(main())
    assert store.count(orderbooks) == 998
    assert store.count(orderbook_levels, orderbook_levels.c.token_id.in_([first, last])) == 0
    assert store.count(orderbook_levels, orderbook_levels.c.size == 5.0) == 998


def test_a_round_cancelled_while_yielding_rewrites_its_books_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_mod, "SLICE_SECONDS", 0.0)
    keeper = _keeper(600, 1)
    writer = BookWriter(store, keeper, lambda: NOW, lambda now: {})
    asyncio.run(writer.flush(force_health=True))
    for book in keeper.registry.books.values():
        book.apply_change("SELL", "0.900", "3")

    async def cancelled_round() -> None:
        task = asyncio.create_task(writer.flush())
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the round is past its first slice
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(cancelled_round())
    assert all(b.pending_write for b in keeper.registry.books.values())  # no diff was lost
    asyncio.run(writer.flush(force_health=True))
    assert store.count(orderbook_levels, orderbook_levels.c.size == 3.0) == 600
