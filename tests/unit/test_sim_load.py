"""The load simulator's pre-generated venue: frames a keeper verifies, served state in step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from polytape.bookfeed.keeper import BookKeeper
from polytape.books import BookRegistry
from polytape.normalize.books import parse_rest_book
from polytape.sim.load import Venue

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_generated_frames_verify_and_the_served_books_follow_the_replay() -> None:
    venue = Venue(40, 8, seed=3)
    frames, markets = venue.generate(400, rate=1000)
    assert len(frames) == len(markets) == 400
    registry = BookRegistry()
    keeper = BookKeeper(registry, verify_within=0.5)
    for _, yes, no in venue.pairs:
        for token in (yes, no):
            registry.track(token)
            book = parse_rest_book(venue.snapshot(token))
            assert not isinstance(book, type(None))
            keeper.apply_rest(book, NOW)  # type: ignore[arg-type]
    assert all(keeper.verified(t) for t in registry.books)
    for k, frame in enumerate(frames):
        keeper.handle_frame(frame, NOW + timedelta(milliseconds=k))
        venue.advance(k)
    keeper.verify_due(NOW + timedelta(seconds=5))
    assert keeper.stats.hash_mismatches == 0 and keeper.stats.top_mismatches == 0
    assert keeper.stats.hash_checks > 0 and not keeper.wanted
    for token, book in registry.books.items():  # the served books are where the replay is
        assert keeper.verified(token)
        assert book.compute_hash() == venue.snapshot(token)["hash"]


def test_a_dropped_frame_is_caught() -> None:
    venue = Venue(4, 8, seed=5)
    frames, markets = venue.generate(60, rate=1000)
    registry = BookRegistry()
    keeper = BookKeeper(registry, verify_within=0.5)
    for _, yes, no in venue.pairs:
        for token in (yes, no):
            registry.track(token)
            keeper.apply_rest(parse_rest_book(venue.snapshot(token)), NOW)  # type: ignore[arg-type]
    lost = None  # the first message from the 10th on that really changes a book (not a no-op)
    for k in range(len(frames)):
        yes = venue.pairs[markets[k]][1]
        levels = dict(venue.books[yes].bids), dict(venue.books[yes].asks)
        venue.advance(k)
        if lost is None and k >= 10 and (dict(venue.books[yes].bids), dict(venue.books[yes].asks)) != levels:
            lost = k
    assert lost is not None
    for k, frame in enumerate(frames):
        if k != lost:
            keeper.handle_frame(frame, NOW + timedelta(milliseconds=300 * k))  # a check every 2nd frame
    keeper.verify_due(NOW + timedelta(seconds=60))
    assert keeper.stats.hash_mismatches >= 1 and "hash_mismatch" in keeper.wanted.values()
