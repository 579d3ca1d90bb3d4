"""The WebSocket book feed: connections, universe following, healing and persistence.

:class:`BookFeed` splits the tracked tokens over market-channel connections
(``ws_assets_per_connection`` each), follows universe changes with subscribe and
unsubscribe frames (``runtime.on_universe_change`` for this process, a poll of
the ``sync_state`` key ``"universe"`` for refreshes elsewhere), feeds every frame to
the :class:`BookKeeper`, heals from REST (:class:`Healer`) and persists at a bounded
cadence (:class:`BookWriter`). Live books are published as ``runtime.books`` (and the
feed as ``runtime.book_feed``); ``runtime.on_book_change``, when set, is called with the
tokens that changed (:class:`polytape.runtime.Runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from polytape import heap, metrics
from polytape.bookfeed.healer import Healer
from polytape.bookfeed.keeper import BookKeeper
from polytape.bookfeed.shards import (
    ConnectRamp,
    connection_cap,
    plan_add,
    plan_remove,
    should_split,
    split,
)
from polytape.bookfeed.writer import BookWriter
from polytape.books import BookRegistry
from polytape.clients.clob import ClobClient
from polytape.clients.clob_ws import MarketChannel
from polytape.config import Settings
from polytape.errors import StoreError
from polytape.runtime import Runtime
from polytape.store import Store
from polytape.store.universe import tracked_tokens, universe_version
from polytape.workers import TokenView

if TYPE_CHECKING:
    from polytape.jobs.base import JobContext

log = structlog.get_logger("polytape.bookfeed")

HEAL_TICK = 0.25  # seconds between looks for books due a REST snapshot
FLUSHES_PER_INTERVAL = 4  # flush ticks per persist interval (each book at most once per interval)
TRIM_SECONDS = 20.0  # how often freed heap memory is handed back (polytape.heap)
CHECKPOINT_SCAN_SECONDS = 5.0  # how often books are looked at for archive checkpoints
CHECKPOINT_MIN_BOOKS = 200  # a look may always checkpoint this many books


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenSource(Protocol):
    """Where a feed learns which tokens to follow (``polytape run``: the worker's leases)."""

    async def __call__(self) -> TokenView: ...

    def current(self) -> bool:
        """False while what the last call returned may no longer be ours (then nothing is written)."""
        ...


class BookFeed:
    """The order-book side of ``polytape run`` when ``ws_enabled`` (see the module notes)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clob: ClobClient,
        *,
        registry: BookRegistry | None = None,
        runtime: Runtime | None = None,
        clock: Callable[[], datetime] = _utcnow,
        universe_poll_seconds: float = 10.0,
        health_interval: float = 5.0,
        token_source: TokenSource | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clob = clob
        self.registry = registry if registry is not None else BookRegistry()
        self.runtime = runtime if runtime is not None else Runtime()
        self.clock = clock
        self.universe_poll_seconds = universe_poll_seconds
        self.token_source = token_source
        self.ramp = ConnectRamp(settings.ws_connects_per_second)
        self.splits = 0
        self.archive = self.runtime.archive
        self.keeper = BookKeeper(
            self.registry,
            verify=settings.ws_verify_hashes,
            verify_within=settings.book_verify_seconds,
            archive=self.archive,
        )
        self.healer = Healer(
            self.keeper,
            clob,
            resync_seconds=settings.book_resync_minutes * 60,
            batch_size=settings.books_batch_size,
            clock=clock,
        )
        self.writer = BookWriter(
            store,
            self.keeper,
            clock,
            self.health,
            health_interval,
            min_interval=settings.book_write_seconds,
        )
        self.channels: dict[str, MarketChannel] = {}
        self.owner: dict[str, str] = {}  # token -> channel name
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._universe_event = asyncio.Event()
        self._stop = asyncio.Event()
        self._universe_version = -1
        self._channel_seq = 0
        self._next_trim = time.monotonic() + TRIM_SECONDS
        self._next_checkpoint_scan = 0.0
        self._health_mark: tuple[float, int] = (time.monotonic(), 0)
        self._metric_marks: dict[str, int] = {}
        self._hour: deque[tuple[float, int, int, int]] = (
            deque()
        )  # (monotonic, reconnects, resyncs, mismatches)
        self.runtime.books = self.registry
        self.runtime.on_universe_change = self.on_universe_change
        self.runtime.book_feed = self

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled or :meth:`stop`; the last changes are flushed on the way out."""
        loops = [
            asyncio.create_task(
                self._every(self.settings.book_write_seconds / FLUSHES_PER_INTERVAL, self._flush)
            ),
            asyncio.create_task(self._every(HEAL_TICK, self._heal)),
            asyncio.create_task(self._universe_loop()),
        ]
        try:
            await self._stop.wait()
        finally:
            for task in [*loops, *self._tasks.values()]:
                task.cancel()
            for task in [*loops, *self._tasks.values()]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()
            await self.writer.flush(force_health=True)

    async def stop(self) -> None:
        """Ask :meth:`run` to finish (it flushes before returning)."""
        self._stop.set()

    async def _every(self, seconds: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` at a fixed rate (a slow round shortens the next wait, never stacks)."""
        next_at = time.monotonic()
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:  # the database is away: the next round tries again
                log.warning(
                    "book feed task: database unavailable", task=getattr(fn, "__name__", "?"), error=str(exc)
                )
            except Exception:  # one failed round must not end the feed
                log.exception("book feed task failed", task=getattr(fn, "__name__", "?"))
            next_at = max(next_at + seconds, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    async def _flush(self) -> None:
        self.keeper.verify_due(self.clock())  # quiet books' deferred hash checks
        if time.monotonic() >= self._next_trim:  # freed start-up and batch memory, back to the OS
            self._next_trim = time.monotonic() + TRIM_SECONDS
            await asyncio.to_thread(heap.trim)
        if self.token_source is not None and not self.token_source.current():
            return  # our leases may have gone to another worker: write nothing until renewed
        if self.archive is not None and time.monotonic() >= self._next_checkpoint_scan:
            # checkpoints are minutes apart: a look every few seconds (a look at 46,000
            # books on every flush tick cost about a tenth of a core)
            interval = self.settings.archive_checkpoint_seconds
            every = min(CHECKPOINT_SCAN_SECONDS, interval / 2)
            self._next_checkpoint_scan = time.monotonic() + every
            # at most twice the steady share per look: the books that came in together
            # (at start-up) would otherwise all fall due in one look, 1.8 M level rows at
            # once for the whole venue; spread, they settle into a steady stream
            limit = max(CHECKPOINT_MIN_BOOKS, math.ceil(2 * len(self.registry.books) * every / interval))
            self.archive.checkpoint(self.registry.books.values(), self.clock(), limit=limit)
        await self.writer.flush()
        self._export_metrics()

    async def _heal(self) -> None:
        await self._resubscribe_flagged()
        await self._split_failing()
        self._notify(await self.healer.tick())

    # ---- frames ----------------------------------------------------------------------------

    def _on_frame(self, channel: MarketChannel, text: str) -> None:
        self._notify(
            self.keeper.handle_frame(
                text, self.clock(), channel.assets, f"{channel.name}.{channel.reconnects}"
            )
        )

    def _on_connect(self, channel: MarketChannel, is_reconnect: bool) -> None:
        if not is_reconnect:
            return
        metrics.WS_RECONNECTS.inc()
        reason = "stale" if channel.dropped_silent else "reconnect"  # silent and replaced, or dropped
        for token_id in channel.assets:
            self.keeper.request_resync(token_id, reason)

    def _notify(self, changed: set[str]) -> None:
        callback = self.runtime.on_book_change
        if changed and callback is not None:
            try:
                callback(changed)
            except Exception:
                log.exception("on_book_change callback failed")

    async def _resubscribe_flagged(self) -> None:
        flagged, self.keeper.resubscribe = self.keeper.resubscribe, set()
        for name, ids in self._by_channel(flagged).items():
            log.info("resubscribing tokens with repeated hash mismatches", channel=name, tokens=len(ids))
            await self.channels[name].resubscribe(ids)

    # ---- universe -----------------------------------------------------------------------------

    def on_universe_change(self, added: set[str], removed: set[str]) -> None:
        """Callback for ``refresh-universe`` in this process: reconcile with the store now."""
        self._universe_event.set()

    async def _universe_loop(self) -> None:
        while True:
            try:
                version = await asyncio.to_thread(universe_version, self.store)
                due = self.token_source is not None  # leases change without a new universe
                if due or version != self._universe_version or self._universe_event.is_set():
                    self._universe_event.clear()
                    self._universe_version = version
                    await self.reconcile()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:  # the database is away: follow the universe once it is back
                log.warning("universe reconcile: database unavailable", error=str(exc))
            except Exception:
                log.exception("universe reconcile failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._universe_event.wait(), self.universe_poll_seconds)

    async def _tracked(self) -> TokenView:
        wanted = await asyncio.to_thread(tracked_tokens, self.store)
        return TokenView(wanted, frozenset(wanted))

    async def reconcile(self) -> tuple[set[str], set[str]]:
        """Follow exactly the tokens of the source (default: the tracked universe); (added, removed).

        Only the tokens that changed are (un)subscribed. A token that left this feed but not
        the universe was handed to another worker: its stored book stays (the new owner's).
        """
        view = await (self.token_source or self._tracked)()
        wanted = view.owned
        current = set(self.owner)
        added = set(wanted) - current
        removed = current - set(wanted)
        if removed:
            await self._remove(removed, keep_stored=removed & view.universe)
        if added:
            await self._add({t: wanted[t] for t in added})
        if added or removed:
            log.info("book feed tokens changed", added=len(added), removed=len(removed), tokens=len(wanted))
        return added, removed

    async def _add(self, tokens: dict[str, str]) -> None:
        archive = self.keeper.archive
        for token_id in tokens:
            self.registry.track(token_id, tokens[token_id])
            if archive is not None:  # until its first snapshot (a gap already open stays)
                archive.open_gap(token_id, "not_subscribed")
        shards = {name: ch.assets for name, ch in self.channels.items()}
        plan = plan_add(shards, tokens, self.settings.ws_assets_per_connection)
        for name, ids in plan.fill.items():
            for token_id in ids:
                self.owner[token_id] = name
            await self.channels[name].subscribe(ids)
        for ids in plan.new:
            self._start_channel(ids)

    def _start_channel(self, ids: Iterable[str]) -> str:
        name = self._new_channel()
        channel = self.channels[name]
        channel.assets.update(ids)
        for token_id in channel.assets:
            self.owner[token_id] = name
        self._tasks[name] = asyncio.create_task(channel.run(), name=f"book-feed-{name}")
        return name

    async def _split_failing(self) -> None:
        """Halve every connection that failed ``ws_split_after_failures`` times in a row."""
        after = self.settings.ws_split_after_failures
        cap = connection_cap(len(self.owner), self.settings.ws_assets_per_connection)
        for name, channel in list(self.channels.items()):
            others_healthy = any(
                ch.connected and ch.failures == 0 for n, ch in self.channels.items() if n != name
            )
            if not should_split(
                channel.failures,
                len(channel.assets),
                after,
                others_healthy=others_healthy,
                connections=len(self.channels),
                max_connections=cap,
            ):
                continue
            kept, moved = split(channel.assets)
            await channel.unsubscribe(moved)
            channel.failures = 0
            new = self._start_channel(moved)
            self.splits += 1
            log.warning(
                "connection keeps failing; split in two",
                channel=name,
                kept=len(kept),
                moved=len(moved),
                new_channel=new,
                reason=channel.last_error,
            )

    def _new_channel(self) -> str:
        self._channel_seq += 1
        name = f"ws-{self._channel_seq}"
        s = self.settings
        channel = self.channels[name] = MarketChannel(
            s.clob_ws_url,
            (),
            on_frame=lambda text, _at: self._on_frame(channel, text),
            on_connect=self._on_connect,
            ping_interval=s.ws_ping_interval_seconds,
            silence_timeout=s.ws_silence_timeout_seconds,
            reconnect_max=s.ws_reconnect_max_seconds,
            subscribe_chunk=s.ws_subscribe_chunk,
            name=name,
            before_connect=self.ramp.wait,
        )
        return name

    async def _remove(self, tokens: set[str], keep_stored: set[str] | frozenset[str] = frozenset()) -> None:
        plan = plan_remove(self.owner, tokens)
        # Forget before the first await: a flush running while the unsubscribe frames go out
        # must not write books that may now belong to another worker.
        for token_id in tokens:
            self.writer.last_written.pop(token_id, None)
            self.owner.pop(token_id, None)
            self.keeper.forget(token_id)
            self.healer.forget(token_id)
        self.writer.removed.update(tokens - keep_stored)
        for name, ids in plan.items():
            if name not in self.channels:
                continue
            channel = self.channels[name]
            await channel.unsubscribe(ids)
            if not channel.assets:
                task = self._tasks.pop(name, None)
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                del self.channels[name]
        self._notify(set(tokens))

    def _by_channel(self, tokens: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for token_id in sorted(tokens):
            name = self.owner.get(token_id)
            if name is not None and name in self.channels:
                out.setdefault(name, []).append(token_id)
        return out

    # ---- health ------------------------------------------------------------------------------

    def health(self, now: datetime) -> dict[str, Any]:
        """The ``ws_feed`` health snapshot ``polytape status`` shows."""
        stats = self.keeper.stats
        mono = time.monotonic()
        last_mono, last_total = self._health_mark
        rate = (stats.messages_total - last_total) / max(mono - last_mono, 1e-9)
        self._health_mark = (mono, stats.messages_total)
        stale_after = self.settings.book_stale_seconds
        stale = sum(
            1
            for token_id in self.registry.conditions
            if (book := self.registry.books.get(token_id)) is None
            or book.received_at is None
            or (now - book.received_at).total_seconds() > stale_after
        )
        last = stats.last_message_at
        reconnects = sum(ch.reconnects for ch in self.channels.values())
        resyncs = sum(v for k, v in self.healer.performed.items() if k != "periodic")
        self._hour.append((mono, reconnects, resyncs, stats.hash_mismatches))
        while self._hour[0][0] < mono - 3600:
            self._hour.popleft()
        _, r0, s0, m0 = self._hour[0]
        return {
            "updated_at": now.isoformat(),
            "connections": sum(1 for ch in self.channels.values() if ch.connected),
            "tokens_subscribed": sum(len(ch.assets) for ch in self.channels.values()),
            "messages_total": stats.messages_total,
            "messages_per_s": round(rate, 2),
            "reconnects": reconnects,
            "resyncs": dict(self.healer.performed),
            "hash_mismatches": stats.hash_mismatches,
            "reconnects_1h": reconnects - r0,
            "resyncs_1h": resyncs - s0,  # forced ones (mismatch, reconnect, ...), not periodic
            "hash_mismatches_1h": stats.hash_mismatches - m0,
            "stale_books": stale,
            "last_message_at": last.isoformat() if last else None,
            "books": len(self.registry),
            "unknown_book_deltas": stats.unknown_book_deltas,
            "rejected": dict(stats.rejected),
            "messages_by_type": dict(stats.by_type),
        }

    def _export_metrics(self) -> None:
        """Move counter deltas into Prometheus once per flush (not once per message)."""
        stats = self.keeper.stats
        for name, total in stats.by_type.items():
            key = "type:" + name
            metrics.WS_MESSAGES.labels(event_type=name).inc(total - self._metric_marks.get(key, 0))
            self._metric_marks[key] = total
        delta = stats.hash_mismatches - self._metric_marks.get("mismatch", 0)
        metrics.BOOK_HASH_MISMATCHES.inc(delta)
        self._metric_marks["mismatch"] = stats.hash_mismatches
        if stats.last_message_at is not None:
            metrics.BOOK_LAG_SECONDS.set((self.clock() - stats.last_message_at).total_seconds())


async def run_feed(ctx: JobContext, **kw: Any) -> None:
    """Entry point for ``polytape run``: the feed of ``ctx`` until cancelled (``kw``: :class:`BookFeed`'s)."""
    feed = BookFeed(ctx.settings, ctx.store, ctx.clients.clob, runtime=ctx.runtime, clock=ctx.clock, **kw)
    await feed.run()
