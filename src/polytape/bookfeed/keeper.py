"""Applying market-channel messages to the books: verify, buffer around snapshots, ask for heals.

Pure (no I/O, no clock): :class:`BookKeeper` takes frames and REST snapshots with
their receive times and updates a :class:`BookRegistry`. It decides *what* needs a
REST resync (``wanted``, with a reason); the feed decides *when* (rate-limited).

Snapshot/delta races (lessons.md #3): while a REST snapshot of a token is in flight,
its deltas are buffered instead of applied (until then a suspect book keeps following
the deltas: a rate-limited resync must not freeze it). When the snapshot
arrives, buffered deltas it already covers are dropped (those up to the one whose hash
equals the snapshot's, else those older than its timestamp) and the rest replayed.
A book is thrown away on a tick-size change and on unsubscribe.

Verification (``verify=True``): every ``book`` and ``price_change`` carries the server's
hash of the book after it. With ``verify_within`` = 0 each one is checked at once; with
``verify_within`` > 0 the newest hash of a book is recorded and checked later, at least
once per ``verify_within`` seconds of receive time (a quiet book by :meth:`verify_due`,
which the feed calls on a timer), and always before something that changes a hash input
other than levels (``last_trade_price``, REST fields). A v2 ``price_change`` also carries
the best bid and ask after the change; they are compared with the book's on every
message (cheap), and a difference forces the full check at once. A lost delta therefore
shows up at the book's next message if it moved the top, else within ``verify_within``.

Whether a book's *current* state is verified: :meth:`BookKeeper.verified` (it runs a
pending check first), or :attr:`OrderBook.verified` without forcing one. The writer
settles pending checks before it persists a book.
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from polytape.books import BookRegistry, HashStatus, OrderBook
from polytape.normalize.books import (
    BookMsg,
    ChangeV2,
    LastTradePriceMsg,
    LevelChange,
    MarketResolvedMsg,
    Message,
    PriceChangeMsg,
    Rejected,
    TextFrame,
    TickSizeChangeMsg,
    decode_frame,
    level_changes,
    timestamp_ms,
)

if TYPE_CHECKING:
    from polytape.archive.service import BookArchive

log = structlog.get_logger("polytape.bookfeed")

RESUBSCRIBE_AFTER = 3  # consecutive mismatches of one token before resubscribing it
SAMPLES_PER_KIND = 20  # rejected payloads kept per kind and window (a flood is sampled)
SAMPLE_WINDOW = timedelta(minutes=1)
MAX_BUFFERED = 5_000  # buffered messages per token; older ones are covered by the snapshot
LTP = "LTP"  # pseudo side of a buffered last_trade_price

GAP_REASONS = {"reconnect": "disconnect"}  # resync reason -> the archive's gap reason
BufferedChange = tuple[str, str, str, str | None]  # side, price, size, hash


@dataclass(slots=True)
class Buffered:
    """A message held back while a snapshot is awaited."""

    ts_ms: int
    ts: str | int
    changes: list[BufferedChange]


@dataclass
class FeedStats:
    """Counters of the feed (published as its health)."""

    messages_total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    resyncs: Counter[str] = field(default_factory=Counter)
    hash_mismatches: int = 0
    hash_checks: int = 0  # full hash comparisons made
    top_mismatches: int = 0  # v2 best_bid/best_ask differing from the book's
    unknown_book_deltas: int = 0
    stale_deltas: int = 0
    untracked: int = 0
    no_book: int = 0
    last_message_at: datetime | None = None


_TYPE_NAMES: dict[type, str] = {}


def _type_name(msg: Message) -> str:
    cls = type(msg)
    name = _TYPE_NAMES.get(cls)
    if name is None:
        name = _TYPE_NAMES[cls] = str(cls.__struct_config__.tag)
    return name


class BookKeeper:
    """Turns frames and snapshots into book state (see the module notes)."""

    def __init__(
        self,
        registry: BookRegistry,
        *,
        verify: bool = True,
        verify_within: float = 0.0,
        archive: BookArchive | None = None,
    ) -> None:
        self.archive = archive  # records every event heard (polytape.archive)
        self._conn = ""  # the connection of the frame being handled (archive rows name it)
        self.registry = registry
        self.verify = verify
        self.verify_within = verify_within
        self._due: deque[tuple[float, str]] = deque()  # (deadline, token) of deferred checks
        self._due_tokens: set[str] = set()
        self.stats = FeedStats()
        self.wanted: dict[str, str] = {}  # token -> reason of the resync it needs
        self.in_flight: set[str] = set()
        self.buffers: dict[str, list[Buffered]] = {}
        self.unverifiable: set[str] = set()  # REST's own hash did not reproduce here
        self.resubscribe: set[str] = set()
        # token -> epoch seconds its whole book was last confirmed by the server (a WS
        # snapshot, or a passed hash check): the healer skips periodic REST snapshots of
        # such books, which would add nothing but load (46,000 books every few minutes)
        self.confirmed: dict[str, float] = {}
        self.rejected: list[tuple[Rejected, datetime]] = []
        self._streak: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._samples: dict[str, tuple[datetime, int]] = {}

    # ---- frames --------------------------------------------------------------------------

    def handle_frame(
        self,
        frame: str | bytes,
        received_at: datetime,
        owned: Container[str] | None = None,
        connection_id: str = "",
    ) -> set[str]:
        """Apply every message of one frame; returns the tokens whose levels changed.

        ``owned`` are the assets subscribed on the frame's connection: a ``price_change``
        carries both tokens of a market and reaches every connection following either, so
        each connection applies only its own tokens' changes (else a sibling followed on
        another socket would get every change twice, out of order).
        """
        changed: set[str] = set()
        stats = self.stats
        self._conn = connection_id
        for item in decode_frame(frame):
            if type(item) is PriceChangeMsg:  # the bulk of the traffic: straight in
                stats.messages_total += 1
                stats.by_type["price_change"] += 1
                stats.last_message_at = received_at
                self._on_price_change(item, received_at, changed, owned)
            elif isinstance(item, TextFrame):
                self._on_text(item)
            elif isinstance(item, Rejected):
                self.reject(item, received_at)
            else:
                self.stats.messages_total += 1
                self.stats.by_type[_type_name(item)] += 1
                self.stats.last_message_at = received_at
                self._dispatch(item, received_at, changed, owned)
        if self._due:
            self._verify_due(received_at.timestamp())
        return changed

    def _dispatch(
        self, msg: Message, received_at: datetime, changed: set[str], owned: Container[str] | None
    ) -> None:
        if isinstance(msg, PriceChangeMsg):
            self._on_price_change(msg, received_at, changed, owned)
        elif isinstance(msg, BookMsg):
            self._on_book(msg, received_at, changed)
        elif isinstance(msg, LastTradePriceMsg):
            self._on_last_trade(msg, received_at)
        elif isinstance(msg, TickSizeChangeMsg):
            if self.registry.is_tracked(msg.asset_id):
                self.registry.discard(msg.asset_id)
                self.request_resync(msg.asset_id, "tick_size")
                changed.add(msg.asset_id)
        elif isinstance(msg, MarketResolvedMsg):
            for token_id in msg.assets_ids:
                if self.registry.discard(token_id) is not None:
                    changed.add(token_id)
                self._forget_heal(token_id)
        # best_bid_ask and new_market are counted only

    def _on_text(self, item: TextFrame) -> None:
        self.stats.by_type["text:" + item.text] += 1
        if item.text == "INVALID OPERATION" and "INVALID OPERATION" not in self._logged:
            self._logged.add("INVALID OPERATION")
            log.warning("market channel answered INVALID OPERATION to a subscription frame")

    def reject(self, item: Rejected, received_at: datetime) -> None:
        """Count a bad payload, log its kind once, keep a sample for ``rejected_payloads``."""
        self.stats.rejected[item.source] += 1
        if item.source not in self._logged:
            self._logged.add(item.source)
            log.warning("market channel payload rejected", kind=item.source, reason=item.reason[:300])
        start, n = self._samples.get(item.source, (received_at, 0))
        if received_at - start > SAMPLE_WINDOW:
            start, n = received_at, 0
        if n < SAMPLES_PER_KIND:
            self.rejected.append((item, received_at))
        self._samples[item.source] = (start, n + 1)

    # ---- messages ------------------------------------------------------------------------

    def _on_book(self, msg: BookMsg, received_at: datetime, changed: set[str]) -> None:
        token_id = msg.asset_id
        if not self.registry.is_tracked(token_id):
            self.stats.untracked += 1
            return
        book = self.registry.ensure(token_id, msg.market)
        try:
            book.apply_snapshot(msg, received_at)
        except ValueError as exc:
            self.reject(Rejected("invalid:book", f"absurd book: {exc}", _raw(msg)), received_at)
            return
        if token_id in self.in_flight:
            self.buffers[token_id] = []  # what was held back is older than this snapshot
        elif token_id in self.wanted:
            self._forget_heal(token_id)  # a full snapshot is the heal
        now_s = received_at.timestamp()
        self.confirmed[token_id] = now_s
        self._expect(book, msg.hash, now_s)
        if self.archive is not None:
            self.archive.record_book(book, received_at, self._conn)
        changed.add(token_id)

    def _on_price_change(
        self, msg: PriceChangeMsg, received_at: datetime, changed: set[str], owned: Container[str] | None
    ) -> None:
        try:
            ts_ms = timestamp_ms(msg.timestamp)
        except ValueError as exc:
            self.reject(Rejected("invalid:price_change", f"bad timestamp: {exc}", _raw(msg)), received_at)
            return
        books, buffers = self.registry.books, self.buffers
        follows = self.registry.conditions if owned is None else owned
        held: dict[str, Buffered] = {}
        last: dict[str, ChangeV2 | LevelChange] = {}
        archived: dict[str, list[tuple[str, str, str]]] | None = None if self.archive is None else {}
        bad = False
        for ch in level_changes(msg):
            token_id = ch.asset_id
            if token_id not in follows:
                continue
            if archived is not None:  # every change heard is history, applied now or not
                archived.setdefault(token_id, []).append((ch.side, ch.price, ch.size))
            if token_id in buffers:
                entry = held.get(token_id)
                if entry is None:
                    entry = held[token_id] = Buffered(ts_ms, msg.timestamp, [])
                    self._hold(token_id, entry)
                entry.changes.append((ch.side, ch.price, ch.size, ch.hash))
                continue
            book = books.get(token_id)
            if book is None or not book.has_snapshot:
                if token_id not in self.wanted:
                    self.stats.unknown_book_deltas += 1
                    self.request_resync(token_id, "unknown_book")
                continue
            if ts_ms < book.timestamp_ms:
                self.stats.stale_deltas += 1
                if ts_ms > book.snapshot_ms:  # older than a delta already applied: out of order
                    self.request_resync(token_id, "sequence")
                continue  # else the snapshot (REST answers outrun the socket) covers it
            try:
                book.apply_change(ch.side, ch.price, ch.size, msg.timestamp, ts_ms)
            except ValueError as exc:
                bad = bad or self._reject_once(msg, exc, received_at)
                continue
            book.received_at = received_at
            last[token_id] = ch
            changed.add(token_id)
        if last and self.verify:
            self._verify_last(last, ts_ms, received_at)
        if archived:
            self._archive_deltas(archived, last, ts_ms, received_at)

    def _verify_last(
        self, last: dict[str, ChangeV2 | LevelChange], ts_ms: int, received_at: datetime
    ) -> None:
        """Check (or schedule the check of) each token's hash after a ``price_change``."""
        books = self.registry.books
        if self.verify_within <= 0 or self.unverifiable:
            now_s = received_at.timestamp()
            for token_id, ch in last.items():
                book = books[token_id]
                if ch.hash and ts_ms > book.snapshot_ms:  # same millisecond: the snapshot may cover it
                    self._expect(book, ch.hash, now_s)
            return
        # deferred checks (the hot path, inlined): record the hash, compare the top of book
        due_tokens, deadline = self._due_tokens, 0.0
        for token_id, ch in last.items():
            book = books[token_id]
            expected = ch.hash
            if not expected or ts_ms <= book.snapshot_ms:
                continue
            book.expect(expected)
            if token_id not in due_tokens:
                due_tokens.add(token_id)
                deadline = deadline or received_at.timestamp() + self.verify_within
                self._due.append((deadline, token_id))
            if type(ch) is ChangeV2 and not _top_matches(book, ch):
                self.stats.top_mismatches += 1
                self._settle(book)

    def _archive_deltas(
        self,
        archived: dict[str, list[tuple[str, str, str]]],
        last: dict[str, ChangeV2 | LevelChange],
        ts_ms: int,
        received_at: datetime,
    ) -> None:
        """One archive message per token; ``verified`` only when this very state was checked."""
        assert self.archive is not None
        books = self.registry.books
        for token_id, changes in archived.items():
            book = books.get(token_id)
            ch = last.get(token_id)
            digest = (ch.hash if ch is not None else None) or ""
            verified = bool(digest) and book is not None and book.verified
            condition_id = book.condition_id if book is not None else self.registry.condition_of(token_id)
            self.archive.record_deltas(
                token_id, condition_id, ts_ms, received_at, changes, digest, verified, self._conn
            )

    def _reject_once(self, msg: PriceChangeMsg, exc: ValueError, received_at: datetime) -> bool:
        self.reject(Rejected("invalid:price_change", f"absurd level: {exc}", _raw(msg)), received_at)
        return True

    def _on_last_trade(self, msg: LastTradePriceMsg, received_at: datetime) -> None:
        token_id = msg.asset_id
        if self.archive is not None and self.registry.is_tracked(token_id):
            with contextlib.suppress(ValueError):  # an unreadable timestamp: the trade is not archived
                self.archive.record_last_trade(
                    token_id,
                    msg.market,
                    timestamp_ms(msg.timestamp),
                    received_at,
                    msg.price,
                    msg.side,
                    msg.size,
                    msg.transaction_hash,
                )
        if token_id in self.buffers:
            try:
                ts_ms = timestamp_ms(msg.timestamp)
            except ValueError:
                ts_ms = 0
            self._hold(token_id, Buffered(ts_ms, msg.timestamp, [(LTP, msg.price, "", None)]))
            return
        book = self.registry.books.get(token_id)
        if book is not None:
            if book.check_pending and msg.price != book.last_trade_price:
                self._settle(book)  # its awaited hash was made with the old price
            book.set_last_trade_price(msg.price)

    def _hold(self, token_id: str, entry: Buffered) -> None:
        buf = self.buffers[token_id]
        buf.append(entry)
        if len(buf) > MAX_BUFFERED:
            del buf[: len(buf) - MAX_BUFFERED]

    # ---- verification and heal requests ------------------------------------------------------

    def _expect(self, book: OrderBook, expected: str | None, now_s: float) -> None:
        """Record the server's hash of ``book`` now; check it now or by the deadline."""
        if not self.verify or not expected:
            return
        token_id = book.token_id
        if token_id in self.unverifiable:
            book.hash = expected
            book.hash_status = "unknown"
            return
        book.expect(expected)
        if self.verify_within <= 0:
            self._settle(book)
        elif token_id not in self._due_tokens:
            self._due_tokens.add(token_id)
            self._due.append((now_s + self.verify_within, token_id))

    def _settle(self, book: OrderBook) -> None:
        """Run the book's pending hash check; a mismatch asks for a resync."""
        status = book.settle()
        if status is None:
            return
        self.stats.hash_checks += 1
        if status == "corrupted":
            self.stats.hash_mismatches += 1
            self._streak[book.token_id] += 1
            if self._streak[book.token_id] >= RESUBSCRIBE_AFTER:
                self.resubscribe.add(book.token_id)
                del self._streak[book.token_id]
            self.request_resync(book.token_id, "hash_mismatch")
        elif status == "verified":
            self._streak.pop(book.token_id, None)
            if book.received_at is not None:
                self.confirmed[book.token_id] = book.received_at.timestamp()
            if self.archive is not None:  # a deferred check passed: the history up to here is good
                self.archive.verified_at(book.token_id, book.timestamp_ms, book.hash)

    def _verify_due(self, now_s: float) -> None:
        due, books = self._due, self.registry.books
        while due and due[0][0] <= now_s:
            token_id = due.popleft()[1]
            self._due_tokens.discard(token_id)
            book = books.get(token_id)
            if book is not None:
                self._settle(book)

    def verify_due(self, now: datetime) -> None:
        """Run the deferred checks whose deadline has passed (the feed calls this on a timer)."""
        if self._due:
            self._verify_due(now.timestamp())

    def settle(self, book: OrderBook) -> HashStatus:
        """Run ``book``'s pending check now, if any; its hash status after that."""
        if book.check_pending:
            self._settle(book)
        return book.hash_status

    def verified(self, token_id: str) -> bool:
        """True when the token's current book state matches the server's newest hash.

        A pending check is run first, so this is the answer to "may this state be
        recorded as verified" (False for a missing book, an unknown or corrupted hash,
        or a state changed by a message that carried no hash).
        """
        book = self.registry.books.get(token_id)
        if book is None:
            return False
        self.settle(book)
        return book.verified

    def request_resync(self, token_id: str, reason: str) -> None:
        """Ask for a REST snapshot of a tracked token (the healer decides when)."""
        if not self.registry.is_tracked(token_id) or token_id in self.wanted:
            return
        self.wanted[token_id] = reason
        self.stats.resyncs[reason] += 1
        if self.archive is not None:  # the history may differ from the venue until the heal
            self.archive.open_gap(token_id, GAP_REASONS.get(reason, reason))

    def _forget_heal(self, token_id: str) -> None:
        self.wanted.pop(token_id, None)
        self.buffers.pop(token_id, None)

    def forget(self, token_id: str) -> None:
        """A token left the universe: drop its book and any pending heal."""
        if self.archive is not None:
            self.archive.forget(token_id)
        self.registry.untrack(token_id)
        self._forget_heal(token_id)
        self.in_flight.discard(token_id)
        self.unverifiable.discard(token_id)
        self.resubscribe.discard(token_id)
        self._streak.pop(token_id, None)
        self._due_tokens.discard(token_id)
        self.confirmed.pop(token_id, None)

    # ---- REST snapshots ------------------------------------------------------------------------

    def begin_fetch(self, token_ids: list[str]) -> None:
        """REST snapshots of these tokens are in flight: buffer their deltas from now on."""
        for token_id in token_ids:
            self.in_flight.add(token_id)
            self.buffers.setdefault(token_id, [])

    def fetch_failed(self, token_id: str, received_at: datetime) -> set[str]:
        """The snapshot did not come: replay what was held back; the heal stays wanted."""
        self.in_flight.discard(token_id)
        buf = self.buffers.pop(token_id, [])
        book = self.registry.books.get(token_id)
        if book is None or not book.has_snapshot:
            return set()
        self._replay(book, buf, received_at)
        return {token_id}

    def no_book(self, token_id: str) -> set[str]:
        """REST has no book for the token (closed, resolved): throw ours away."""
        self.in_flight.discard(token_id)
        self._forget_heal(token_id)
        self.stats.no_book += 1
        return {token_id} if self.registry.discard(token_id) is not None else set()

    def apply_rest(self, msg: BookMsg, received_at: datetime) -> set[str]:
        """Apply a REST snapshot, then replay the deltas it does not cover."""
        token_id = msg.asset_id
        self.in_flight.discard(token_id)
        reason = self.wanted.pop(token_id, None)
        buf = self.buffers.pop(token_id, [])
        if not self.registry.is_tracked(token_id):
            return set()
        try:
            rest_ms = timestamp_ms(msg.timestamp)
        except ValueError as exc:
            self.reject(Rejected("invalid:book", f"bad /book timestamp: {exc}", _raw(msg)), received_at)
            return set()
        book = self.registry.ensure(token_id, msg.market)
        if reason is not None or not book.has_snapshot or rest_ms >= book.timestamp_ms:
            try:
                book.apply_snapshot(msg, received_at, source="rest")
            except ValueError as exc:
                self.reject(Rejected("invalid:book", f"absurd /book: {exc}", _raw(msg)), received_at)
                return set()
            self._verify_rest(book, msg.hash)
            if self.archive is not None:
                self.archive.record_book(book, received_at, "rest")
            buf = _not_covered(buf, msg.hash, rest_ms)
        else:  # our book is newer than the answer: keep it, learn the REST-only fields
            self.settle(book)
            book.min_order_size = msg.min_order_size or book.min_order_size
            book.neg_risk = msg.neg_risk if msg.neg_risk is not None else book.neg_risk
            book.meta_dirty = True
        book.received_at = received_at
        self._replay(book, buf, received_at)
        return {token_id}

    def _verify_rest(self, book: OrderBook, expected: str) -> None:
        """A REST book whose own hash does not reproduce means the algorithm changed."""
        if not self.verify or not expected:
            return
        if book.verify(expected) == "corrupted":
            if book.token_id not in self.unverifiable and "rest_hash" not in self._logged:
                self._logged.add("rest_hash")
                log.warning("REST book hash does not reproduce; hash checks off for such books")
            self.unverifiable.add(book.token_id)
            book.hash_status = "unknown"
        else:
            self.unverifiable.discard(book.token_id)
            self._streak.pop(book.token_id, None)

    def _replay(self, book: OrderBook, buf: list[Buffered], received_at: datetime) -> None:
        now_s = received_at.timestamp()
        for entry in buf:
            last: str | None = None
            for side, price, size, digest in entry.changes:
                if side == LTP:
                    if book.check_pending and price != book.last_trade_price:
                        self._settle(book)
                    book.set_last_trade_price(price)
                    continue
                try:
                    book.apply_change(side, price, size, entry.ts, entry.ts_ms)
                except ValueError:
                    continue  # already rejected when it arrived
                last = digest
            if last is not None and entry.ts_ms > book.snapshot_ms:
                self._expect(book, last, now_s)
            if self.archive is not None:  # after the snapshot, in order (replay skips older rows)
                changes = [(c[0], c[1], c[2]) for c in entry.changes if c[0] != LTP]
                verified = last is not None and book.verified
                self.archive.record_deltas(
                    book.token_id,
                    book.condition_id,
                    entry.ts_ms,
                    received_at,
                    changes,
                    last or "",
                    verified,
                    "rest",
                )
        if buf:
            book.received_at = received_at


def _top_matches(book: OrderBook, ch: ChangeV2) -> bool:
    """The change's ``best_bid``/``best_ask`` (``"0"`` for an empty side) equal the book's."""
    best_bid, best_ask = ch.best_bid, ch.best_ask
    if best_bid is None or best_ask is None:
        return True
    try:
        bid, ask = float(best_bid), float(best_ask)
    except ValueError:
        return True  # not a number: the full hash check decides
    return book.top_is(bid, ask)


def _not_covered(buf: list[Buffered], snapshot_hash: str, snapshot_ms: int) -> list[Buffered]:
    """Buffered messages a snapshot does not already contain."""
    if snapshot_hash:
        for i in range(len(buf) - 1, -1, -1):
            if any(c[3] == snapshot_hash for c in buf[i].changes):
                return buf[i + 1 :]
    return [entry for entry in buf if entry.ts_ms >= snapshot_ms]


def _raw(msg: Message) -> object:
    import msgspec

    return msgspec.to_builtins(msg)
