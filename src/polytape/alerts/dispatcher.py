"""Deliver new signals as alerts, one background worker per channel.

:meth:`AlertDispatcher.submit` is the signal engine's listener: it only puts rows on
per-channel queues and returns, so delivery never holds up ingestion (a full queue
drops the newest, counted). Each channel's worker, for every signal:

1. skips it unless the channel's filters (type, minimum score) want it;
2. claims it in ``alert_deliveries`` (a signal key already there for this channel is
   never sent again, whatever process logged it);
3. logs it ``stale`` when it is not news (:func:`polytape.signals.news.is_news`: what it
   is about happened before ``POLYTAPE_ALERT_HORIZON_MINUTES``; stored, not delivered);
4. holds it back (``held``) when the channel already sent ``max_per_hour`` alerts about
   the same market in the last hour; when the window has room again, one digest lists
   everything held back for that market;
5. otherwise sends it, retrying with capped, jittered exponential backoff, and logs
   ``sent`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from polytape import metrics
from polytape.alerts.channels import Channel, Outcome
from polytape.signals.format import describe
from polytape.signals.news import is_news
from polytape.store import Store
from polytape.store import alerts as astore

log = structlog.get_logger("polytape.alerts")

QUEUE_SIZE = 1000
HOUR = timedelta(hours=1)
DIGEST_TICK_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0
DIGEST_LINES = 20
# A running process sends a market's digest within the hour after it held the first
# signal back; a restart picks up what was held this long ago and is in no digest yet.
HELD_CARRIED = 2 * HOUR


def _utcnow() -> datetime:
    return datetime.now(UTC)


def market_of(row: Mapping[str, Any]) -> str:
    """The market an alert is about (a neg-risk arbitrage: its event)."""
    if row.get("condition_id"):
        return str(row["condition_id"])
    payload = row.get("payload") or {}
    event = payload.get("event_id") if isinstance(payload, Mapping) else None
    return f"event:{event}" if event else "-"


@dataclass
class _Lane:
    """A channel's queue, worker and per-market rate windows."""

    channel: Channel
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    task: asyncio.Task[None] | None = None
    sent: dict[str, deque[datetime]] = field(default_factory=dict)
    held: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    busy: bool = False


class AlertDispatcher:
    """Sends signals to every configured channel without ever blocking the caller."""

    def __init__(
        self,
        store: Store,
        channels: Iterable[Channel],
        *,
        max_per_hour: int = 10,
        max_attempts: int = 5,
        retry_base_seconds: float = 2.0,
        horizon: timedelta | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.lanes = [_Lane(c) for c in channels]
        self.max_per_hour = max_per_hour
        self.max_attempts = max_attempts
        self.retry_base = retry_base_seconds
        self.clock = clock
        self.horizon = horizon
        self.dropped = 0
        self._seeding: asyncio.Future[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # --- the engine's side ---------------------------------------------------------------

    def submit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue signals for every channel (call on the event loop); never waits."""
        items = [dict(r) for r in rows]
        if not items or not self.lanes:
            return
        self._start()
        for lane in self.lanes:
            for row in items:
                try:
                    lane.queue.put_nowait(row)
                except asyncio.QueueFull:
                    self.dropped += 1
                    metrics.ALERT_DELIVERIES.labels(outcome="dropped").inc()
                    log.warning("alert queue full: signal dropped", channel=lane.channel.name)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every queued signal was handled; True when so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(not lane.queue.empty() or lane.busy for lane in self.lanes):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def aclose(self) -> None:
        """Stop the workers; what is still queued is logged as dropped."""
        running = [self._ticker, self._seeding, *(lane.task for lane in self.lanes)]
        tasks = [t for t in running if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed seed was logged
                await task
        left = sum(lane.queue.qsize() for lane in self.lanes)
        if left:
            self.dropped += left
            metrics.ALERT_DELIVERIES.labels(outcome="dropped").inc(left)
            log.warning("alerts still queued at shutdown were not sent", signals=left)

    # --- workers -------------------------------------------------------------------------------

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        for lane in self.lanes:
            if lane.task is None or lane.task.done():
                lane.task = loop.create_task(self._work(lane), name=f"alerts:{lane.channel.key}")
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick(), name="alerts:digests")

    def start(self) -> None:
        """Start the workers and the digest ticker now, so what a previous process held
        back goes out as a digest even if no new signal comes (no-op off the event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start()

    async def _seed(self) -> None:
        """Carry over a restart (once; every worker waits for it): the rate windows, from
        what was sent in the last hour, and what was held back and is in no digest yet
        (:data:`HELD_CARRIED`)."""
        seeding = self._seeding
        if seeding is None or (seeding.done() and (seeding.cancelled() or seeding.exception() is not None)):
            seeding = self._seeding = asyncio.ensure_future(self._load_seed())  # first, or again
        await asyncio.shield(seeding)

    async def _load_seed(self) -> None:
        now = self.clock()
        rows = await asyncio.to_thread(astore.sent_since, self.store, now - HOUR)
        held = await asyncio.to_thread(astore.held_pending, self.store, now - HELD_CARRIED)
        by_key = {lane.channel.key: lane for lane in self.lanes}
        for r in rows:
            lane = by_key.get(r["channel"])
            if lane is not None and r["finished_at"] is not None:
                lane.sent.setdefault(r["market"] or "-", deque()).append(r["finished_at"])
        for lane in self.lanes:
            for times in lane.sent.values():
                ordered = sorted(times)
                times.clear()
                times.extend(ordered)
        for h in held:
            lane = by_key.get(h["channel"])
            if lane is not None:
                lane.held.setdefault(h["market"] or "-", []).append(h["signal"])
        if held:
            log.info("alerts held back before a restart await their digest", signals=len(held))

    async def _work(self, lane: _Lane) -> None:
        while True:
            first = await lane.queue.get()
            lane.busy = True
            try:
                batch = [first]
                while not lane.queue.empty():
                    batch.append(lane.queue.get_nowait())
                await self._seed()
                await self._handle(lane, batch)
                await self._flush_digests(lane)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store outage or a bug: log, keep the worker alive
                log.exception("alert delivery failed", channel=lane.channel.name)
            finally:
                lane.busy = False

    async def _tick(self) -> None:
        while True:
            try:
                await self._seed()
            except Exception as exc:  # a store outage: tried again on the next tick
                log.warning("alert state not loaded yet", error=str(exc))
            else:
                for lane in self.lanes:
                    if lane.held and not lane.busy:
                        try:
                            await self._flush_digests(lane)
                        except Exception:
                            log.exception("alert digest failed", channel=lane.channel.name)
            await asyncio.sleep(DIGEST_TICK_SECONDS)

    async def _handle(self, lane: _Lane, batch: list[dict[str, Any]]) -> None:
        ch = lane.channel
        now = self.clock()
        wanted = [r for r in batch if ch.wants(r)]
        filtered = len(batch) - len(wanted)
        if filtered:
            metrics.ALERT_DELIVERIES.labels(outcome="filtered").inc(filtered)
        if not wanted:
            return
        claims = [self._claim_row(ch, r, now) for r in wanted]
        claimed = await self.store.awrite(lambda tx: astore.claim(tx, claims))
        for row in wanted:
            key = row["dedupe_key"]
            if key not in claimed:
                metrics.ALERT_DELIVERIES.labels(outcome="repeat").inc()
                continue
            market = market_of(row)
            if self.horizon is not None and not is_news(row, now, self.horizon):
                await self._finish(ch, [key], "stale", 0, None)
                continue
            if not self._has_room(lane, market, now) or lane.held.get(market):
                lane.held.setdefault(market, []).append(row)
                await self._finish(ch, [key], "held", 0, None)
                continue
            title = f"polytape: {row.get('signal_type')}"
            outcome, attempts = await self._deliver(ch, title, describe(row))
            if outcome.ok:
                lane.sent.setdefault(market, deque()).append(self.clock())
            await self._finish(ch, [key], "sent" if outcome.ok else "failed", attempts, outcome.error)

    def _claim_row(self, ch: Channel, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        return {
            "channel": ch.key,
            "channel_name": ch.name,
            "dedupe_key": row["dedupe_key"],
            "kind": "signal",
            "signal_id": row.get("id"),
            "signal_type": row.get("signal_type"),
            "market": market_of(row),
            "status": "sending",
            "attempts": 0,
            "created_at": now,
        }

    def _has_room(self, lane: _Lane, market: str, now: datetime) -> bool:
        times = lane.sent.get(market)
        if times is None:
            return True
        while times and now - times[0] >= HOUR:
            times.popleft()
        return len(times) < self.max_per_hour

    async def _flush_digests(self, lane: _Lane) -> None:
        """One digest per market whose window has room again, listing what was held back."""
        now = self.clock()
        for market in [m for m, rows in lane.held.items() if rows and self._has_room(lane, m, now)]:
            rows = lane.held.pop(market)
            key = f"digest:{market}:{rows[0]['dedupe_key']}"
            claim = {
                **self._claim_row(lane.channel, rows[0], now),
                "dedupe_key": key,
                "kind": "digest",
                "signal_id": None,
                "signal_type": None,
            }
            if not await self.store.awrite(lambda tx, c=claim: astore.claim(tx, [c])):  # type: ignore[misc]
                continue
            title = f"polytape: {len(rows)} alert(s) held back"
            lines = [f"{len(rows)} signal(s) about {market} were held back (at most "
                     f"{self.max_per_hour} alerts per hour per market):"]  # fmt: skip
            lines += [f"- {describe(r)}" for r in rows[:DIGEST_LINES]]
            if len(rows) > DIGEST_LINES:
                lines.append(f"… and {len(rows) - DIGEST_LINES} more")
            outcome, attempts = await self._deliver(lane.channel, title, "\n".join(lines))
            if outcome.ok:
                lane.sent.setdefault(market, deque()).append(self.clock())
            await self._finish(
                lane.channel, [key], "sent" if outcome.ok else "failed", attempts, outcome.error
            )

    async def _deliver(self, ch: Channel, title: str, body: str) -> tuple[Outcome, int]:
        """Send with retries (capped, jittered exponential backoff); never raises."""
        outcome = Outcome(False, "not attempted")
        for attempt in range(1, self.max_attempts + 1):
            outcome = await asyncio.to_thread(ch.send, title, body)
            if outcome.ok:
                metrics.ALERT_DELIVERIES.labels(outcome="sent").inc()
                return outcome, attempt
            if attempt < self.max_attempts:
                delay = min(MAX_BACKOFF_SECONDS, self.retry_base * 2 ** (attempt - 1))
                log.info("alert delivery retry", channel=ch.name, attempt=attempt, error=outcome.error)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
        metrics.ALERT_DELIVERIES.labels(outcome="failed").inc()
        log.warning("alert not delivered", channel=ch.name, attempts=self.max_attempts, error=outcome.error)
        return outcome, self.max_attempts

    async def _finish(
        self, ch: Channel, keys: list[str], status: str, attempts: int, error: str | None
    ) -> None:
        if status in ("held", "stale"):
            metrics.ALERT_DELIVERIES.labels(outcome=status).inc(len(keys))
        now = self.clock()
        await asyncio.to_thread(
            astore.finish, self.store, ch.key, keys, status=status, attempts=attempts, error=error, now=now
        )
