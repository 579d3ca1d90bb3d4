"""The archive as a running component: the book feed's hook, flushing, upkeep, metrics.

:class:`BookArchive` is what the runtime holds (``None`` when
``POLYTAPE_ARCHIVE_ENABLED=false``). The feed and jobs call its small recording methods
where they apply events; :meth:`BookArchive.run` flushes in a worker thread at least
every ``archive_flush_seconds``, compacts closed hours and applies retention every few
minutes, and :meth:`BookArchive.close` flushes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import structlog

from polytape import metrics
from polytape.archive.compaction import compact, drop_expired
from polytape.archive.schema import GAPS, L2, TRADES
from polytape.archive.timeparse import datetime_us
from polytape.archive.writer import ArchiveWriter, book_levels, now_us
from polytape.books import OrderBook

log = structlog.get_logger("polytape.archive")

UPKEEP_SECONDS = 300.0
TICK_SECONDS = 0.5
_SIDE = {"BUY": 0, "SELL": 1}  # the writer's side codes (bid, ask)


class BookArchive:
    """The archive component (see the module notes)."""

    def __init__(
        self,
        root: Path | str,
        *,
        flush_seconds: float = 10.0,
        retention_days: float | None = None,
        checkpoint_seconds: float = 300.0,
        name: str = "default",
    ) -> None:
        self.writer = ArchiveWriter(
            root, name=name, flush_seconds=flush_seconds, checkpoint_seconds=checkpoint_seconds
        )
        self.root = self.writer.root
        self.retention_days = retention_days
        self._metric_rows = {L2: 0, TRADES: 0, GAPS: 0}
        self._metric_bytes = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._write_seconds: deque[float] = deque(maxlen=5)  # how long recent flushes took

    @classmethod
    def from_settings(cls, settings: Any, name: str = "job") -> BookArchive | None:
        """The archive the settings ask for, or None when it is disabled.

        ``name`` names the writer (its files and state): ``run`` for ``polytape run``,
        ``job`` for one-shot commands, so both can record into one directory at once.
        """
        if not settings.archive_enabled:
            return None
        return cls(
            settings.archive_dir,
            flush_seconds=settings.archive_flush_seconds,
            retention_days=settings.archive_retention_days,
            checkpoint_seconds=settings.archive_checkpoint_seconds,
            name=name,
        )

    # ---- the hook: small calls where events are applied -----------------------------------

    def record_book(
        self, book: OrderBook, received_at: datetime, connection_id: str = "", *, heal: bool = True
    ) -> None:
        """A book just replaced by a snapshot (WS ``book``, REST heal, polling)."""
        self.writer.record_snapshot(
            book.token_id,
            book.condition_id,
            book.timestamp_ms * 1000,
            datetime_us(received_at),
            book_levels(book.bids),
            book_levels(book.asks),
            book.hash,
            book.hash_status == "verified",
            connection_id,
            heal=heal,
        )

    def record_deltas(
        self,
        token_id: str,
        condition_id: str,
        ts_ms: int,
        received_at: datetime,
        changes: Iterable[tuple[str, str, str]],
        hash: str = "",
        verified: bool = False,
        connection_id: str = "",
    ) -> None:
        """Level changes of one message for one token: ``(BUY|SELL, price, size)`` as served.

        Every change heard is recorded, applied to the live book or not (buffered while a
        snapshot is in flight, older than the book): replay skips rows older than the
        snapshot it starts from, so they only shape the history before that snapshot.
        Changes that do not parse (already rejected by the keeper) are left out.
        """
        try:
            rows = [(_SIDE[side], float(price), float(size)) for side, price, size in changes]
        except (KeyError, ValueError):
            rows = []
            for side, price, size in changes:
                try:
                    rows.append((_SIDE[side], float(price), float(size)))
                except (KeyError, ValueError):
                    continue
        self.writer.record_changes(
            token_id,
            condition_id,
            ts_ms * 1000,
            datetime_us(received_at),
            rows,
            hash,
            verified,
            connection_id,
        )

    def record_gap(
        self,
        token_id: str,
        start: datetime | int,
        end: datetime | int,
        reason: str,
        healed_by: datetime | int | None = None,
    ) -> None:
        """A closed interval of missing history (µs or datetimes), e.g. a worker hand-over."""
        self.writer.record_gap(
            token_id, _us(start), _us(end), reason, None if healed_by is None else _us(healed_by)
        )

    def record_handovers(self, handovers: Sequence[Any], until: datetime) -> None:
        """Tokens this worker took over (``runtime.on_handover``): each is a gap from the
        earlier owner's last recording (``since``) to this worker's first snapshot of it."""
        for h in handovers:  # replaces the feed's ``not_subscribed`` gap when that came first
            self.writer.open_gap(h.token_id, "handover", datetime_us(h.since))

    def verified_at(self, token_id: str, ts_ms: int, hash: str = "") -> None:
        """A (deferred) hash check passed for the token's state at server time ``ts_ms``.

        The token's newest message, if still buffered and carrying ``hash``, is marked
        verified; rows already flushed keep their flag. This also moves the token's last
        known-good time, where a later gap would start.
        """
        writer = self.writer
        us = ts_ms * 1000
        writer.mark_verified(token_id, us, hash)
        if us > writer.good_ts.get(token_id, 0):
            writer.good_ts[token_id] = us

    def open_gap(self, token_id: str, reason: str) -> None:
        """The token's history may be wrong from its last good time until its next heal."""
        self.writer.open_gap(token_id, reason)

    def forget(self, token_id: str) -> None:
        """The token left the universe."""
        self.writer.forget(token_id)

    def record_trades(self, rows: Iterable[Mapping[str, Any]], received_at: datetime) -> None:
        """Trades as written to the ``trades`` table (re-read ones are dropped on reading)."""
        local = datetime_us(received_at)
        for row in rows:
            ts = row["trade_ts"]
            self.writer.record_trade(
                row.get("token_id") or "",
                row.get("condition_id") or "",
                datetime_us(ts) if isinstance(ts, datetime) else int(ts) * 1_000_000,
                local,
                id=row.get("dedupe_key") or "",
                side=row.get("side") or "",
                price=float(row.get("price") or 0.0),
                amount=float(row.get("size") or 0.0),
                transaction_hash=row.get("transaction_hash") or "",
                wallet=row.get("wallet") or "",
                outcome=row.get("outcome") or "",
                source=row.get("source") or "",
            )

    def record_last_trade(
        self,
        token_id: str,
        condition_id: str,
        ts_ms: int,
        received_at: datetime,
        price: str,
        side: str = "",
        size: str = "",
        transaction_hash: str | None = None,
    ) -> None:
        """A WS ``last_trade_price`` (a trade heard on the market channel)."""
        key = f"ws:{transaction_hash}:{token_id}:{price}:{size}" if transaction_hash else ""
        self.writer.record_trade(
            token_id,
            condition_id,
            ts_ms * 1000,
            datetime_us(received_at),
            id=key,
            side=side,
            price=_num(price),
            amount=_num(size),
            transaction_hash=transaction_hash or "",
            source="ws",
        )

    def checkpoint(
        self, books: Iterable[OrderBook], received_at: datetime | None = None, limit: int | None = None
    ) -> int:
        """Snapshot the books whose newest archived snapshot is older than the checkpoint
        interval (at most ``limit`` of them: the rest stay due for the next call)."""
        local = now_us() if received_at is None else datetime_us(received_at)
        n = 0
        for book in books:
            if limit is not None and n >= limit:
                break
            if book.has_snapshot and self.writer.checkpoint_due(book.token_id, local):
                self.record_book(book, received_at or datetime.now().astimezone(), "checkpoint", heal=False)
                n += 1
        return n

    # ---- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the flush and upkeep loop in the background (until :meth:`aclose`)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="archive")

    async def aclose(self) -> None:
        """Stop the loop, flush the rest and mark the state clean (the runtime calls this)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        async with self._lock:
            await asyncio.to_thread(self.close)

    async def run(self) -> None:
        """Flush when due, upkeep every few minutes, until cancelled (then flush)."""
        loop = asyncio.get_running_loop()
        next_upkeep = loop.time() + 30.0
        try:
            while True:
                await asyncio.sleep(TICK_SECONDS)
                # start early by the time recent writes took (and one tick), so the rows are
                # on disk within archive_flush_seconds of being heard
                if self.writer.flush_due(lead_s=TICK_SECONDS + 2.0 * max(self._write_seconds, default=0.0)):
                    await self.flush()
                if loop.time() >= next_upkeep:
                    next_upkeep = loop.time() + UPKEEP_SECONDS
                    await self.upkeep()
        finally:
            with contextlib.suppress(Exception):
                await self.flush()

    async def flush(self) -> int:
        """Write what is buffered (in a worker thread); failures are logged, not raised."""
        async with self._lock:
            batch = self.writer.detach()
            if not batch.rows:
                return 0
            started = time.monotonic()
            try:
                written = await asyncio.to_thread(self.writer.write, batch)
            except OSError as exc:
                log.error("archive flush failed; the rows are a gap", error=str(exc)[:300])
                return 0
            self._write_seconds.append(time.monotonic() - started)
            pa.default_memory_pool().release_unused()  # the batch's Arrow buffers, back to the OS
            self._export_metrics()
            return written

    async def upkeep(self) -> None:
        """Compaction of closed hours and retention, in a worker thread."""
        try:
            now = now_us()
            result = await asyncio.to_thread(
                compact, self.root, now, grace_seconds=max(120.0, 3 * self.writer.flush_seconds)
            )
            dropped = await asyncio.to_thread(drop_expired, self.root, now, self.retention_days)
        except Exception:
            log.exception("archive compaction failed")
            return
        if result.hours_compacted or dropped:
            log.info(
                "archive compacted",
                hours=result.hours_compacted,
                files=result.files_merged,
                bytes_before=result.bytes_before,
                bytes_after=result.bytes_after,
                dropped_hours=dropped,
            )

    def close(self) -> None:
        """Flush everything and mark the state clean (blocking)."""
        try:
            self.writer.close()
        except OSError as exc:
            log.error("archive close failed", error=str(exc)[:300])
        self._export_metrics()

    def _export_metrics(self) -> None:
        st = self.writer.stats
        for data_type, total in st.rows.items():
            metrics.ARCHIVE_ROWS.labels(data_type=data_type).inc(total - self._metric_rows[data_type])
            self._metric_rows[data_type] = total
        metrics.ARCHIVE_BYTES.inc(st.bytes - self._metric_bytes)
        self._metric_bytes = st.bytes
        metrics.ARCHIVE_FLUSH_LAG.set(st.last_lag_s)


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _us(value: datetime | int) -> int:
    return datetime_us(value) if isinstance(value, datetime) else int(value)
