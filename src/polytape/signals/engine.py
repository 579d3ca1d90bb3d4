"""The signal engine: read what the store (or the live books) holds, run the rules,
write ``signal_events`` idempotently.

A periodic pass (:meth:`SignalEngine.run_pass`) reads trades stored since the
``signal_engine:last_trade_id`` watermark, the fresh books (from ``orderbooks`` /
``orderbook_levels``, or from a live :class:`BookRegistry`), the newest open-interest
snapshots and price series, runs every rule, and commits the new signals together
with the watermark. Stored books are read incrementally (:mod:`.bookcache`) and the book
rules run only for markets whose books changed; live books count as current as long as
the feed vouches for them (:mod:`.live`). The event-driven path (:meth:`on_book_change` →
:meth:`evaluate_books`) re-runs the book rules for the markets a WebSocket update
touched, coalescing bursts so it runs at most once per ``debounce`` seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from polytape import metrics
from polytape.books import BookRegistry
from polytape.config import Settings
from polytape.signals import inputs as inp
from polytape.signals import live, rules
from polytape.signals.bookcache import StoredBooks
from polytape.signals.model import (
    LARGE_TRADE,
    SIGNAL_TYPES,
    BookView,
    PricePoint,
    Prior,
    RuleConfig,
    Signal,
)
from polytape.store import Store, Tx
from polytape.store import signals as sstore

log = structlog.get_logger("polytape.signals")

WATERMARK_KEY = "signal_engine:last_trade_id"
MAX_TRADES_PER_PASS = 50_000
STRUCTURE_TTL_SECONDS = 300.0  # markets change on Gamma's 10-minute cadence; new ones reload it
STRUCTURE_RETRY_SECONDS = 5.0
DEBOUNCE_SECONDS = 0.05
COOLDOWN_TYPES = [t for t in SIGNAL_TYPES if t != LARGE_TRADE]

Listener = Callable[[list[dict[str, Any]]], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassResult:
    """What one evaluation wrote (rows with ids) and what it looked at."""

    written: list[dict[str, Any]] = field(default_factory=list)
    trades_seen: int = 0
    books_seen: int = 0
    more_trades: bool = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.written:
            out[row["signal_type"]] = out.get(row["signal_type"], 0) + 1
        return out


@dataclass
class _Inputs:
    trades: list[Any] = field(default_factory=list)
    window_trades: list[Any] = field(default_factory=list)
    trade_prices: list[dict[str, Any]] = field(default_factory=list)
    metric_prices: list[dict[str, Any]] = field(default_factory=list)
    oi_rows: list[dict[str, Any]] = field(default_factory=list)
    books: dict[str, BookView] = field(default_factory=dict)
    structure: inp.Structure = field(default_factory=inp.Structure)
    book_markets: set[str] | None = None  # markets whose books changed (None: every market)
    watermark: int | None = None
    more: bool = False


class SignalEngine:
    """Evaluates the rules over the store (and live books) and writes what fires."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        registry: BookRegistry | Callable[[], BookRegistry | None] | None = None,
        feed: Callable[[], Any] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self.store = store
        self.cfg = RuleConfig.from_settings(settings)
        self.oi_lookback = timedelta(seconds=max(3 * settings.sync_open_interest_interval, 900.0))
        self.clock = clock
        self.debounce = debounce
        self.listeners: list[Listener] = []
        self._registry = registry
        self._feed = feed
        self._lock = threading.Lock()  # one evaluation at a time (passes run in threads)
        self._mids: dict[str, list[PricePoint]] = {}
        self._priors: dict[tuple[str, str], Prior] = {}
        self._priors_id: int | None = None
        self._structure: inp.Structure | None = None
        self._structure_at = 0.0
        self._unknown: dict[str, float] = {}  # markets a reload did not find -> when (monotonic)
        self._stored_books = StoredBooks(self.cfg.book_max_age_seconds)
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def registry(self) -> BookRegistry | None:
        """The live books, when there are any."""
        if callable(self._registry):
            return self._registry()
        return self._registry

    def live_views(
        self, registry: BookRegistry, now: datetime, tokens: Iterable[str] | None = None
    ) -> dict[str, BookView]:
        """Views of the live books, each current as of the feed's latest confirmation of it."""
        feed = self._feed() if self._feed is not None else None
        return live.views_from_registry(registry, tokens, live.feed_confirmations(feed, now))

    # --- the periodic pass ------------------------------------------------------------

    async def run_pass(self, now: datetime | None = None) -> PassResult:
        """One full evaluation; returns what it wrote."""
        when = now or self.clock()
        registry = self.registry
        books = self.live_views(registry, when) if registry is not None else None
        result = await asyncio.to_thread(self.evaluate, when, books)
        self._notify(result.written)
        return result

    def evaluate(self, now: datetime, live_books: dict[str, BookView] | None = None) -> PassResult:
        """Read, run every rule, write (blocking; ``run_pass`` runs it in a thread)."""
        with self._lock:
            data = self.store.read(lambda conn: self._read(conn, now, live_books))
            found = self._run_rules(data, now)
            kept = self._cooled(found, now)
            written = self.store.write(lambda tx: self._write(tx, kept, data.watermark, now))
        _count_written(written)
        return PassResult(written, len(data.trades), len(data.books), data.more)

    def _cooled(self, found: list[Signal], now: datetime) -> list[Signal]:
        """Apply the cooldown against the priors, refreshed from the store first."""
        if any(s.signal_type != LARGE_TRADE for s in found):
            self.store.read(lambda conn: self._refresh_priors(conn, now))
        return rules.apply_cooldown(found, self._priors, self.cfg, now)

    def _refresh_priors(self, conn: Any, now: datetime) -> None:
        """Merge signals stored since the last look (by id; the first look reads the cooldown
        window), so every pass sees what other passes and processes wrote without a scan."""
        if self._priors_id is None:
            rows = sstore.recent_signals(conn, COOLDOWN_TYPES, since=now - self.cfg.cooldown)
        else:
            rows = sstore.recent_signals(conn, COOLDOWN_TYPES, after_id=self._priors_id)
        for key, prior in inp.priors_from(rows).items():
            if key not in self._priors or self._priors[key].detected_at <= prior.detected_at:
                self._priors[key] = prior
        self._priors_id = max([self._priors_id or 0, *(int(r["id"]) for r in rows)])
        horizon = now - self.cfg.cooldown
        self._priors = {k: p for k, p in self._priors.items() if p.detected_at >= horizon}

    def _read(self, conn: Any, now: datetime, live_books: dict[str, BookView] | None) -> _Inputs:
        data = _Inputs()
        self._read_trades(conn, now, data)
        self._read_books(conn, now, live_books, data)
        data.oi_rows = sstore.oi_pairs(conn, now - self.oi_lookback)
        data.metric_prices = sstore.metric_prices(conn, now - self.cfg.move_window)
        return data

    def _read_trades(self, conn: Any, now: datetime, data: _Inputs) -> None:
        state = conn.execute(sstore.state_stmt(WATERMARK_KEY)).scalar()
        after = int(state["id"]) if isinstance(state, dict) and "id" in state else 0
        newest = sstore.max_trade_id(conn)
        rows = sstore.new_trades(conn, after, newest, now - self.cfg.trade_horizon, MAX_TRADES_PER_PASS)
        data.trades = [inp.trade_in(r) for r in rows]
        data.more = len(rows) >= MAX_TRADES_PER_PASS
        data.watermark = data.trades[-1].id if data.more else newest
        if not data.trades:
            return
        oldest = min(t.trade_ts for t in data.trades)
        groups = {(t.wallet, t.condition_id) for t in data.trades if t.wallet}
        window_rows = sstore.wallet_trades(conn, groups, oldest - self.cfg.accumulation_window)
        data.window_trades = [inp.trade_in(r) for r in window_rows]
        cids = {t.condition_id for t in data.trades}
        data.trade_prices = sstore.trade_price_extremes(conn, cids, now - self.cfg.move_window)

    def _read_books(
        self, conn: Any, now: datetime, live_books: dict[str, BookView] | None, data: _Inputs
    ) -> None:
        """The books the rules see, and which markets' books changed since the last pass.

        Stored books are read incrementally (:class:`StoredBooks`); only the markets (and
        neg-risk events) of changed books are evaluated, plus every market when the market
        structure was (re)loaded. Live books are all evaluated: the feed's own change
        events already evaluate each change as it happens.
        """
        changed: set[str] | None = None
        if live_books is not None:
            data.books = live_books
        else:
            changed = self._stored_books.refresh(conn, now)
            data.books = dict(self._stored_books.views)
        cids = {b.condition_id for b in data.books.values() if b.condition_id}
        cached = self._cached_structure(cids)
        data.structure = cached or inp.load_structure(conn, cids)
        self._remember_structure(data.structure)
        if changed is None or cached is None:
            data.book_markets = None
        else:
            data.book_markets = {data.books[t].condition_id or "" for t in changed} - {""}
        if live_books is not None:
            return
        binaries, events = inp.book_situations(data.structure, data.books, self._book_cids(data))
        wanted = inp.arb_tokens(binaries, events, self.cfg.arb_min_edge)
        for token_id, (bids, asks) in sstore.book_levels(conn, wanted).items():
            top = data.books[token_id]
            data.books[token_id] = inp.view_from_levels(
                token_id, top.condition_id, bids, asks, top.updated_at
            )

    @staticmethod
    def _book_cids(data: _Inputs) -> set[str]:
        """The markets whose book rules this pass evaluates."""
        if data.book_markets is not None:
            return data.book_markets
        return {b.condition_id for b in data.books.values() if b.condition_id}

    def _run_rules(self, data: _Inputs, now: datetime) -> list[Signal]:
        cfg = self.cfg
        new_ids = {t.id for t in data.trades}
        out = rules.large_trade(data.trades, cfg, now)
        out += rules.wallet_accumulation(data.window_trades, new_ids, cfg, now)
        binaries, events = inp.book_situations(data.structure, data.books, self._book_cids(data))
        out += rules.complement_arb(binaries, cfg, now)
        out += rules.neg_risk_arb(events, cfg, now)
        questions = {cid: m.question for cid, m in data.structure.markets.items()}
        questions.update({t.condition_id: t.question for t in data.trades if t.question})
        mids = self._record_mids(data, now)
        series = inp.price_series(data.trade_prices, data.metric_prices, mids, questions)
        out += rules.price_move(series, cfg, now)
        out += rules.oi_change(inp.oi_series(data.oi_rows), questions, cfg, now)
        return out

    def _record_mids(self, data: _Inputs, now: datetime) -> dict[str, list[PricePoint]]:
        """Keep the YES mid of every fresh, uncrossed book in memory (the mid series)."""
        start = now - self.cfg.move_window
        for cid in self._book_cids(data):
            info = data.structure.markets.get(cid)
            book = data.books.get(info.token_ids[0]) if info is not None and info.token_ids else None
            if book is None or book.mid is None or not book.is_evidence(now, self.cfg.book_max_age_seconds):
                continue
            points = self._mids.setdefault(cid, [])
            if not points or points[-1].price != book.mid:
                points.append(PricePoint(book.updated_at, book.mid))
        for cid, points in list(self._mids.items()):
            if points[0].ts < start:
                kept = [p for p in points if p.ts >= start]
                if kept:
                    self._mids[cid] = kept
                else:
                    del self._mids[cid]
        return self._mids

    def _write(
        self, tx: Tx, signals: Sequence[Signal], watermark: int | None, now: datetime
    ) -> list[dict[str, Any]]:
        written = sstore.insert_signals_returning(tx, [s.row() for s in signals])
        if watermark is not None:
            tx.set_state(WATERMARK_KEY, {"id": watermark}, now)
        return written

    # --- the event-driven path ------------------------------------------------------------

    def on_book_change(self, token_ids: Iterable[str]) -> None:
        """Note changed books and schedule one coalesced evaluation (safe from any thread)."""
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                log.warning("book change outside an event loop ignored")
                return
        ids = set(token_ids)
        if _in_loop(loop):
            self._schedule(ids)
        else:
            loop.call_soon_threadsafe(self._schedule, ids)

    def _schedule(self, token_ids: set[str]) -> None:
        self._pending |= token_ids
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="signals-live")

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self.debounce)
            batch, self._pending = self._pending, set()
            try:
                await self.evaluate_books(batch)
            except Exception:  # the live path must never take the feed down
                log.exception("live signal evaluation failed")

    async def wait_idle(self) -> None:
        """Until no coalesced evaluation is pending (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def evaluate_books(self, token_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Run the book rules for the markets (and neg-risk events) of ``token_ids``."""
        registry = self.registry
        if registry is None:
            return []
        changed = set(token_ids)
        cids = {registry.condition_of(t) for t in changed} - {""}
        structure = await self._structure_for(cids)
        cids |= {structure.token_market[t] for t in changed if t in structure.token_market}
        binaries, events = inp.book_situations(structure, {}, cids)
        tokens = {t for m in binaries for t in structure.markets[m.condition_id].token_ids}
        tokens |= {t for ev in events for cid, _, _ in ev.legs for t in structure.markets[cid].token_ids[:1]}
        now = self.clock()
        books = self.live_views(registry, now, tokens)
        written = await asyncio.to_thread(self._evaluate_books, structure, books, cids, now)
        self._notify(written)
        return written

    def _evaluate_books(
        self, structure: inp.Structure, books: dict[str, BookView], cids: set[str], now: datetime
    ) -> list[dict[str, Any]]:
        with self._lock:
            binaries, events = inp.book_situations(structure, books, cids)
            found = rules.complement_arb(binaries, self.cfg, now) + rules.neg_risk_arb(events, self.cfg, now)
            if not found:
                return []
            kept = self._cooled(found, now)
            written = self.store.write(lambda tx: self._write(tx, kept, None, now))
        _count_written(written)
        return written

    async def _structure_for(self, cids: set[str]) -> inp.Structure:
        """The cached market structure, reloaded when old or missing one of ``cids``."""
        cached = self._cached_structure(cids)
        if cached is not None:
            return cached
        now = time.monotonic()
        if self._structure is not None and now - self._structure_at < STRUCTURE_TTL_SECONDS:
            # Reload only for a market not looked up lately: a market that just joined the
            # universe is judged on its first snapshot, while one the store does not know
            # (yet) is not reloaded for on every update.
            missing = cids - self._structure.markets.keys()
            if all(now - self._unknown.get(cid, -1e18) < STRUCTURE_RETRY_SECONDS for cid in missing):
                return self._structure
        registry = self.registry
        known = set(registry.conditions.values()) - {""} if registry is not None else set()
        structure = await asyncio.to_thread(self.store.read, lambda c: inp.load_structure(c, known | cids))
        self._remember_structure(structure)
        looked_up = time.monotonic()
        self._unknown = dict.fromkeys((known | cids) - structure.markets.keys(), looked_up)
        return structure

    def _cached_structure(self, cids: set[str]) -> inp.Structure | None:
        """The cached structure if it is young enough and knows every market of ``cids``."""
        cached = self._structure
        if cached is None or time.monotonic() - self._structure_at >= STRUCTURE_TTL_SECONDS:
            return None
        return cached if cids <= cached.markets.keys() else None

    def _remember_structure(self, structure: inp.Structure) -> None:
        self._structure, self._structure_at = structure, time.monotonic()

    def _notify(self, written: list[dict[str, Any]]) -> None:
        if not written:
            return
        log.info("signals written", count=len(written), types=PassResult(written).counts())
        for listener in self.listeners:
            try:
                listener(written)
            except Exception:
                log.exception("signal listener failed")


def _count_written(written: Sequence[dict[str, Any]]) -> None:
    for signal_type, n in PassResult(list(written)).counts().items():
        metrics.SIGNALS_WRITTEN.labels(signal_type=signal_type).inc(n)
        metrics.ROWS_WRITTEN.labels(table="signal_events").inc(n)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
