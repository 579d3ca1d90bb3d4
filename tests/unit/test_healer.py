"""Which books the healer fetches from REST on its own (no sockets: ``Healer.due`` is pure).

A book the server confirmed within ``book_resync_minutes`` (a WS snapshot, or a passed
hash check) needs no periodic REST snapshot: at venue scale those would re-fetch
46,000 verified books every few minutes. A quiet book, never confirmed since, does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from polytape.bookfeed.healer import Healer
from polytape.bookfeed.keeper import BookKeeper
from polytape.books import BookRegistry, OrderBook
from polytape.normalize.books import BookMsg, Level
from polytape.sim.load import price_change

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CID, YES, NO = "0x" + "cd" * 32, "1" * 70, "2" * 70
PERIOD = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def mono(self) -> float:
        return (self.now - T0).total_seconds()


def _truth() -> dict[str, OrderBook]:
    books = {}
    for token in (YES, NO):
        book = OrderBook(token, CID)
        book.min_order_size, book.neg_risk = "5", False
        msg = BookMsg(
            CID, token, "1790658661000", [Level("0.40", "10")], [Level("0.60", "20")], tick_size="0.01"
        )
        book.apply_snapshot(msg, T0)
        books[token] = book
    return books


def _book_frame(truth: OrderBook) -> bytes:
    return msgspec.json.encode(
        {
            "event_type": "book",
            "market": CID,
            "asset_id": truth.token_id,
            "timestamp": truth.timestamp,
            "hash": truth.compute_hash(),
            "bids": [{"price": p, "size": s} for p, s in truth.side_texts("BUY")],
            "asks": [{"price": p, "size": s} for p, s in truth.side_texts("SELL")],
            "tick_size": truth.tick_size,
            "last_trade_price": truth.last_trade_price,
        }
    )


def _setup() -> tuple[Clock, BookKeeper, Healer, dict[str, OrderBook]]:
    clock = Clock()
    registry = BookRegistry()
    for token in (YES, NO):
        registry.track(token, CID)
        book = registry.ensure(token, CID)
        book.min_order_size, book.neg_risk = "5", False  # known from REST, as in the feed
    keeper = BookKeeper(registry, verify=True, verify_within=0.5)
    healer = Healer(
        keeper,
        None,
        resync_seconds=PERIOD,
        batch_size=100,
        clock=clock,
        monotonic=clock.mono,  # type: ignore[arg-type]
    )
    return clock, keeper, healer, _truth()


def _due(healer: Healer) -> set[str]:
    return {t for t, reason in healer.due() if reason == "periodic"}


def test_unconfirmed_books_are_fetched_and_confirmed_ones_wait_a_period() -> None:
    clock, keeper, healer, truth = _setup()
    assert _due(healer) == {YES, NO}  # nothing heard yet
    for token in (YES, NO):
        keeper.handle_frame(_book_frame(truth[token]), clock())
    assert _due(healer) == set()  # a WS snapshot is a whole book
    clock.now += timedelta(seconds=PERIOD - 1)
    assert _due(healer) == set()
    clock.now += timedelta(seconds=2)
    assert _due(healer) == {YES, NO}  # quiet for a period: fetched


def test_a_book_lacking_rest_only_hash_inputs_is_fetched_once_confirmed_or_not() -> None:
    clock, keeper, healer, truth = _setup()
    keeper.registry.books[NO].min_order_size = None  # no REST snapshot of it yet
    for token in (YES, NO):
        keeper.handle_frame(_book_frame(truth[token]), clock())
    assert _due(healer) == {NO}
    healer.last_snapshot[NO] = clock.mono()  # as tick() marks a fetch done
    assert _due(healer) == set()


def test_a_passed_hash_check_confirms_the_book_a_mismatch_does_not() -> None:
    clock, keeper, healer, truth = _setup()
    for token in (YES, NO):
        keeper.handle_frame(_book_frame(truth[token]), clock())
    clock.now += timedelta(seconds=PERIOD - 5)
    msg = price_change(truth, CID, YES, NO, 41, "BUY", "7", "1790658662000")
    msg["price_changes"][1]["hash"] = "0" * 40  # NO's state will not match
    keeper.handle_frame(msgspec.json.encode(msg), clock())
    keeper.verify_due(clock() + timedelta(seconds=1))
    assert keeper.registry.books[YES].verified and not keeper.registry.books[NO].verified
    clock.now += timedelta(seconds=10)  # a period after the snapshots, 5 s after the check
    due = healer.due()
    assert (NO, "hash_mismatch") in due  # requested, not periodic
    assert _due(healer) == set()
    clock.now += timedelta(seconds=PERIOD)
    assert YES in _due(healer)


def test_a_look_that_skips_the_scan_answers_as_a_full_scan_would() -> None:
    """Between scans the healer skips the walk over every token until the soonest a book
    can fall due; tokens and books entering or leaving end the wait. Over random steps
    its answers equal those of a healer that scans on every look."""
    import random

    rng = random.Random(14)
    clock, keeper, fast, _ = _setup()
    slow = Healer(keeper, None, resync_seconds=PERIOD, batch_size=100, clock=clock, monotonic=clock.mono)  # type: ignore[arg-type]
    tokens = [YES, NO]
    skipped = 0
    for step in range(3000):
        clock.now += timedelta(seconds=rng.choice((0.0, 0.25, 0.25, 0.25, 0.25, 1.0, 7.0, 30.0)))
        action = rng.random() * 2.5  # from 1.0 on: nothing happens but time (the usual look)
        token = rng.choice(tokens)
        if action < 0.05:  # a new token joins, its book later
            token = f"{900 + step}"
            tokens.append(token)
            keeper.registry.track(token, CID)
        elif action < 0.10:
            book = keeper.registry.ensure(token, CID)
            if rng.random() < 0.5:
                book.min_order_size, book.neg_risk = "5", False
        elif action < 0.15:  # a book thrown away (a hash mismatch), rebuilt without REST inputs
            keeper.registry.discard(token)
        elif action < 0.35:  # a WS snapshot or a passed hash check
            keeper.confirmed[token] = clock().timestamp()
        elif action < 0.45:  # a REST fetch of what is due: done (the book and its inputs), or failed
            got_books = rng.random() < 0.7
            for due_token, _ in slow.due():
                for healer in (fast, slow):
                    healer.last_attempt[due_token] = clock.mono()
                    if got_books:
                        healer.last_snapshot[due_token] = clock.mono()
                if got_books:
                    book = keeper.registry.ensure(due_token, CID)
                    book.min_order_size, book.neg_risk = "5", False
        elif action < 0.47 and len(tokens) > 2:  # a token leaves
            tokens.remove(token)
            keeper.forget(token)
            fast.forget(token)
            slow.forget(token)
        before = fast._quiet_until
        got = fast.due()
        skipped += before is not None and fast._quiet_until is before
        slow._quiet_until = None
        assert got == slow.due(), step
    assert skipped > 400  # the point of it: looks between changes skip the walk (586 of 3,000 here)
