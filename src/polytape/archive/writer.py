"""Appending book events, trades and gaps to the archive; the gap ledger.

:class:`ArchiveWriter` buffers rows in compact columns (``array`` for numbers, shared
string objects for ids) and flushes them as new Parquet files, one per data type and
hour, at least every ``flush_seconds`` (and earlier when ``max_buffered_rows`` fill).
:meth:`ArchiveWriter.detach` takes the buffers in the caller's thread and
:meth:`ArchiveWriter.write` writes them (safe in a worker thread), so the feed never
blocks on disk.

The gap ledger: every interval in which a token's archived history may differ from the
venue is a ``gaps`` row ``(token_id, start, end, reason, healed_by)``. A gap is *opened*
(:meth:`open_gap`, e.g. on a hash mismatch, a reconnect (``disconnect``), a silent
connection replaced (``stale``), a tick-size change, a token joining the feed
(``not_subscribed``, from then until its first snapshot)) at the
token's last known-good time: the newer of its last verified message and its last
snapshot. It is *closed* by the next snapshot that is a heal (a WS ``book`` or REST
snapshot; checkpoints are not heals), which becomes ``healed_by``. :meth:`record_gap`
writes an already closed interval (a worker hand-over, say).

Crash safety: after each flush a small state file (``_state/<name>.json``, replaced
atomically) holds the last sequence number, each token's newest server time on disk and
the open gaps. A writer starting on an existing state opens a gap for every token from
its newest time on disk (reason ``crash``, or ``stopped`` after a clean close), which
the token's first snapshot closes: a SIGKILL loses at most the unflushed interval, and
that interval is a recorded gap.
"""

from __future__ import annotations

import json
import os
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from polytape.archive.schema import (
    GAPS,
    GAPS_SCHEMA,
    HOUR_US,
    L2,
    L2_SCHEMA,
    STATE_DIR,
    TRADES,
    TRADES_SCHEMA,
    new_name,
    partition_dir,
    write_atomic,
)
from polytape.books import LevelMap, level_size

log = structlog.get_logger("polytape.archive")

BID, ASK = "bid", "ask"
FLUSH_ZSTD_LEVEL = 1  # fast on the write path; compaction recompresses closed hours harder
Level = tuple[float, float]  # (price, size)


def now_us() -> int:
    """Wall-clock time in µs since the epoch."""
    return time.time_ns() // 1000


@dataclass(slots=True)
class OpenGap:
    """A gap whose healing snapshot has not come yet."""

    start: int
    reason: str


class _L2Columns:
    """Buffered ``incremental_book_L2`` rows: per-message fields once, per-level ones per row.

    A message (one snapshot, or one token's changes of a ``price_change``) appends its
    shared fields once; its levels append side, price and amount. The table expands the
    message fields over their rows (run-end decoding) when it is built.
    """

    __slots__ = (
        "amount",
        "base",
        "cond",
        "conn",
        "ends",
        "hash",
        "local",
        "price",
        "side",
        "snap",
        "token",
        "ts",
        "ver",
    )

    def __init__(self) -> None:
        self.token: list[str] = []
        self.cond: list[str] = []
        self.ts = array("q")
        self.local = array("q")
        self.snap = bytearray()
        self.hash: list[str] = []
        self.ver = bytearray()
        self.conn: list[str] = []
        self.base = array("q")  # seq of the message's first row minus its row index
        self.ends = array("i")  # row count after the message (run end)
        self.side = bytearray()  # 0 bid, 1 ask
        self.price = array("d")
        self.amount = array("d")

    def __len__(self) -> int:
        return len(self.price)

    def table(self) -> Any:
        n, m = len(self.price), len(self.ends)
        ends = _numbers(pa.int32(), m, self.ends)

        def expand(values: Any) -> Any:
            return pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(ends, values))

        seq = pc.add(
            expand(_numbers(pa.int64(), m, self.base)), _numbers(pa.int64(), n, array("q", range(n)))
        )
        return pa.Table.from_arrays(
            [
                expand(pa.array(self.token, pa.string())),
                expand(pa.array(self.cond, pa.string())),
                expand(_numbers(pa.int64(), m, self.ts)),
                expand(_numbers(pa.int64(), m, self.local)),
                expand(_bools(self.snap)),
                pa.DictionaryArray.from_arrays(_numbers(pa.int8(), n, self.side), _SIDES).cast(pa.string()),
                _numbers(pa.float64(), n, self.price),
                _numbers(pa.float64(), n, self.amount),
                expand(pa.array(self.hash, pa.string())),
                expand(_bools(self.ver)),
                expand(pa.array(self.conn, pa.string())),
                seq,
            ],
            schema=L2_SCHEMA,
        )

    def message(
        self,
        token: str,
        cond: str,
        ts: int,
        local: int,
        snap: bool,
        hash: str,
        ver: bool,
        conn: str,
        seq0: int,
    ) -> None:
        """Append the shared fields of a message whose rows were just appended (``seq0``: first row's)."""
        start = self.ends[-1] if self.ends else 0
        self.token.append(token)
        self.cond.append(cond)
        self.ts.append(ts)
        self.local.append(local)
        self.snap.append(snap)
        self.hash.append(hash)
        self.ver.append(ver)
        self.conn.append(conn)
        self.base.append(seq0 - start)
        self.ends.append(len(self.price))


_SIDES = pa.array([BID, ASK], pa.string())
SIDE_CODES = {BID: 0, ASK: 1, 0: 0, 1: 1}


def _numbers(kind: Any, n: int, values: array[Any] | bytearray) -> Any:
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(values)])


def _bools(values: bytearray) -> Any:
    return pa.array(values, pa.uint8()).cast(pa.bool_())


@dataclass
class Batch:
    """Rows taken from the buffers by :meth:`ArchiveWriter.detach`, plus the state they reach."""

    l2: _L2Columns
    trades: list[dict[str, Any]]
    gaps: list[dict[str, Any]]
    state: dict[str, Any]
    taken_at: int

    @property
    def rows(self) -> int:
        return len(self.l2) + len(self.trades) + len(self.gaps)


@dataclass
class FlushStats:
    """What the writer has done (published as metrics and in ``status``)."""

    rows: dict[str, int] = field(default_factory=lambda: {L2: 0, TRADES: 0, GAPS: 0})
    bytes: int = 0
    files: int = 0
    flushes: int = 0
    failures: int = 0
    last_flush_us: int | None = None
    last_lag_s: float = 0.0


class ArchiveWriter:
    """Buffers and flushes archive rows; keeps the gap ledger (see the module notes)."""

    def __init__(
        self,
        root: Path | str,
        *,
        name: str = "default",
        flush_seconds: float = 10.0,
        checkpoint_seconds: float = 300.0,
        max_buffered_rows: int = 200_000,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.root = Path(root)
        self.name = name
        self.flush_seconds = flush_seconds
        self.checkpoint_us = int(checkpoint_seconds * 1e6)
        self.max_buffered_rows = max_buffered_rows
        self.clock = clock
        self.seq = 0
        self.last_ts: dict[str, int] = {}  # token -> newest server time recorded
        self.good_ts: dict[str, int] = {}  # token -> newest verified message or snapshot
        self.last_snapshot: dict[str, int] = {}  # token -> local time of its newest snapshot row
        self.changed: set[str] = set()  # tokens with level changes since their newest snapshot
        self.conditions: dict[str, str] = {}  # token -> condition id (readers use it to prune)
        self.open_gaps: dict[str, OpenGap] = {}
        self.stats = FlushStats()
        self._l2 = _L2Columns()
        self._last_msg: dict[str, int] = {}  # token -> index of its newest message in ``_l2``
        self._trades: list[dict[str, Any]] = []
        self._gaps: list[dict[str, Any]] = []
        self._oldest_unflushed: int | None = None
        self._closed = False
        self._used = False  # nothing is written (not even the state) before the first row
        self._state_path = self.root / STATE_DIR / f"{name}.json"
        self._recover()

    # ---- recording (hot path) ----------------------------------------------------------

    def record_snapshot(
        self,
        token_id: str,
        condition_id: str,
        ts_us: int,
        local_us: int,
        bids: Iterable[Level],
        asks: Iterable[Level],
        hash: str = "",
        verified: bool = False,
        connection_id: str = "",
        *,
        heal: bool = True,
    ) -> None:
        """A full book that replaces the previous one (``heal=False`` for a checkpoint)."""
        c = self._l2
        n = 0
        for code, levels in ((b"\x00", bids), (b"\x01", asks)):
            levels = levels if isinstance(levels, list) else list(levels)
            if levels:
                prices, sizes = zip(*levels, strict=False)
                c.price.extend(prices)
                c.amount.extend(sizes)
                c.side.extend(code * len(levels))
                n += len(levels)
        if not n:  # an empty book still marks the reset
            c.side.append(0)
            c.price.append(0.0)
            c.amount.append(0.0)
            n = 1
        c.message(token_id, condition_id, ts_us, local_us, True, hash, verified, connection_id, self.seq + 1)
        self._last_msg[token_id] = len(c.ends) - 1
        self.seq += n
        self.last_ts[token_id] = ts_us
        self.last_snapshot[token_id] = local_us
        self.changed.discard(token_id)
        self.conditions[token_id] = condition_id
        if heal:
            self.good_ts[token_id] = ts_us
            gap = self.open_gaps.pop(token_id, None)
            # a token's first snapshot no newer than its joining: nothing was missed
            if gap is not None and not (gap.reason == "not_subscribed" and ts_us <= gap.start):
                self._add_gap(token_id, gap.start, max(ts_us, gap.start), gap.reason, ts_us)
        elif verified:
            self.good_ts[token_id] = ts_us
        self._touch(local_us)

    def record_changes(
        self,
        token_id: str,
        condition_id: str,
        ts_us: int,
        local_us: int,
        changes: Iterable[tuple[str | int, float, float]],
        hash: str = "",
        verified: bool = False,
        connection_id: str = "",
    ) -> None:
        """Level updates of one message for one token: ``(side, price, new size)``; 0 removes.

        ``side`` is ``bid``/``ask`` or its code (0/1, what :class:`BookArchive` passes).
        """
        rows = changes if isinstance(changes, list) else list(changes)
        n = len(rows)
        if not n:
            return
        c = self._l2
        sides, prices, sizes = zip(*rows, strict=False)  # strict=True costs a check per row
        c.side.extend(sides if type(sides[0]) is int else [SIDE_CODES[x] for x in sides])
        c.price.extend(prices)
        c.amount.extend(sizes)
        c.message(token_id, condition_id, ts_us, local_us, False, hash, verified, connection_id, self.seq + 1)
        self._last_msg[token_id] = len(c.ends) - 1
        self.seq += n
        self.last_ts[token_id] = ts_us
        self.changed.add(token_id)
        if verified:
            self.good_ts[token_id] = ts_us
        self._touch(local_us)

    def mark_verified(self, token_id: str, ts_us: int, hash: str) -> bool:
        """A deferred hash check passed on the state after the token's newest message.

        That message's row is marked verified if it is still buffered and carries exactly the
        checked server hash (its state is the one recomputed); older rows keep their flag.
        """
        idx = self._last_msg.get(token_id)
        c = self._l2
        if idx is None or not hash or c.ts[idx] != ts_us or c.hash[idx] != hash:
            return False
        c.ver[idx] = 1
        return True

    def record_trade(
        self,
        token_id: str,
        condition_id: str,
        ts_us: int,
        local_us: int,
        *,
        id: str = "",
        side: str = "",
        price: float = 0.0,
        amount: float = 0.0,
        transaction_hash: str = "",
        wallet: str = "",
        outcome: str = "",
        source: str = "",
    ) -> None:
        """One trade (``side`` is the taker's, ``buy`` or ``sell``)."""
        self.seq += 1
        self._trades.append(
            {
                "token_id": token_id,
                "condition_id": condition_id,
                "timestamp": ts_us,
                "local_timestamp": local_us,
                "id": id,
                "side": side.lower(),
                "price": price,
                "amount": amount,
                "transaction_hash": transaction_hash,
                "wallet": wallet,
                "outcome": outcome,
                "source": source,
                "seq": self.seq,
            }
        )
        self._touch(local_us)

    # ---- the gap ledger ------------------------------------------------------------------

    def open_gap(self, token_id: str, reason: str, start_us: int | None = None) -> None:
        """From now until the token's next healing snapshot its history may be wrong.

        ``start_us`` defaults to the token's last known-good time (last verified message
        or snapshot), else its newest recorded time, else now. A gap already open stays
        as it is (its start is the earlier, its reason the first), except that a hand-over
        explains a ``not_subscribed`` gap better (this worker joined because it took the
        token over): it takes its place, from the earlier of the two starts.
        """
        opened = self.open_gaps.get(token_id)
        if opened is not None:
            if not (reason == "handover" and opened.reason == "not_subscribed"):
                return
            start_us = opened.start if start_us is None else min(start_us, opened.start)
        if start_us is None:
            start_us = self.good_ts.get(token_id) or self.last_ts.get(token_id) or self.clock()
        self.open_gaps[token_id] = OpenGap(start_us, reason)

    def close_gap(self, token_id: str, end_us: int | None = None, healed_by: int | None = None) -> None:
        """Close an open gap without a healing snapshot (the token left the universe)."""
        gap = self.open_gaps.pop(token_id, None)
        if gap is not None:
            end = self.clock() if end_us is None else end_us
            self._add_gap(token_id, gap.start, max(end, gap.start), gap.reason, healed_by)

    def record_gap(
        self, token_id: str, start_us: int, end_us: int, reason: str, healed_by: int | None = None
    ) -> None:
        """Record a closed interval in which the token's history is missing or may be wrong.

        This is the public entry for other components (a worker hand-over records the
        interval between the old owner's last flush and the new owner's first snapshot).
        """
        if end_us < start_us:
            raise ValueError(f"gap ends before it starts: {start_us} > {end_us}")
        self._add_gap(token_id, start_us, end_us, reason, healed_by)

    def forget(self, token_id: str) -> None:
        """The token left the universe: close its open gap, drop its bookkeeping."""
        self.close_gap(token_id)
        for d in (self.last_ts, self.good_ts, self.last_snapshot, self.conditions):
            d.pop(token_id, None)
        self.changed.discard(token_id)

    def _add_gap(self, token_id: str, start: int, end: int, reason: str, healed_by: int | None) -> None:
        self.seq += 1
        self._gaps.append(
            {
                "token_id": token_id,
                "start": start,
                "end": end,
                "reason": reason,
                "healed_by": healed_by,
                "seq": self.seq,
            }
        )
        self._touch(self.clock())

    # ---- checkpoints -------------------------------------------------------------------

    def checkpoint_due(self, token_id: str, local_us: int) -> bool:
        """True when a replay of the token would start too far back.

        That is: its newest snapshot is older than the checkpoint interval and it changed
        since, or that snapshot is over an hour old (a replay then reads at most the
        current and the previous hour).
        """
        age = local_us - self.last_snapshot.get(token_id, 0)
        return age >= self.checkpoint_us and (token_id in self.changed or age >= HOUR_US)

    # ---- flushing ------------------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        """Rows recorded and not yet handed to :meth:`write`."""
        return len(self._l2) + len(self._trades) + len(self._gaps)

    def flush_due(self, now: int | None = None, lead_s: float = 0.0) -> bool:
        """True when the oldest buffered row is ``flush_seconds`` old less ``lead_s`` (the
        time a write takes: the rows must be on disk within ``flush_seconds``), or the
        buffers are full."""
        if self._oldest_unflushed is None:
            return False
        if self.buffered_rows >= self.max_buffered_rows:
            return True
        now = self.clock() if now is None else now
        lead = min(max(0.0, lead_s), self.flush_seconds / 2)
        return now - self._oldest_unflushed >= (self.flush_seconds - lead) * 1e6

    def detach(self) -> Batch:
        """Take the buffered rows and the state they reach (cheap; call in the recording thread)."""
        taken = self.clock()
        batch = Batch(self._l2, self._trades, self._gaps, self._state(clean=False), taken)
        self._l2, self._trades, self._gaps = _L2Columns(), [], []
        self._last_msg = {}
        self._oldest_unflushed = None
        return batch

    def write(self, batch: Batch) -> int:
        """Write a detached batch as new files, then the state; returns bytes written.

        On a failure (disk full, say) the rows are lost for the archive: every token in the
        batch gets a gap (reason ``archive_write``) from its last good time, and the
        error is raised for the caller to log.
        """
        if not self._used:
            return 0
        written = 0
        try:
            if len(batch.l2):
                written += self._write_type(L2, batch.l2.table())
            if batch.trades:
                written += self._write_type(TRADES, pa.Table.from_pylist(batch.trades, schema=TRADES_SCHEMA))
            if batch.gaps:
                written += self._write_type(GAPS, pa.Table.from_pylist(batch.gaps, schema=GAPS_SCHEMA))
            self._write_state(batch.state)
        except OSError:
            self.stats.failures += 1
            for token_id in set(batch.l2.token):
                self.open_gap(token_id, "archive_write", batch.state["tokens"].get(token_id))
            raise
        st = self.stats
        st.rows[L2] += len(batch.l2)
        st.rows[TRADES] += len(batch.trades)
        st.rows[GAPS] += len(batch.gaps)
        st.bytes += written
        st.flushes += 1
        st.last_flush_us = self.clock()
        oldest = min(batch.l2.local, default=batch.taken_at)
        st.last_lag_s = max(0.0, (st.last_flush_us - oldest) / 1e6)
        return written

    def flush(self) -> int:
        """Detach and write in this thread (tests, shutdown, one-shot jobs)."""
        return self.write(self.detach())

    def close(self) -> None:
        """Flush everything and mark the state clean (the next start records a ``stopped`` gap)."""
        if self._closed:
            return
        self._closed = True
        if not self._used:
            return  # this process recorded nothing: the directory stays as it was
        self.flush()
        self._write_state(self._state(clean=True))

    def _write_type(self, data_type: str, table: Any) -> int:
        time_col = "start" if data_type == GAPS else "timestamp"
        hours = pc.divide(table.column(time_col), 3_600_000_000)
        lo, hi = pc.min(hours).as_py(), pc.max(hours).as_py()
        first_seq = table.column("seq")[0].as_py()
        written = 0
        for hour in range(lo, hi + 1) if hi - lo < 48 else sorted(set(hours.to_pylist())):
            part = table if lo == hi else table.filter(pc.equal(hours, hour))
            if part.num_rows == 0:
                continue
            folder = partition_dir(self.root, data_type, hour)
            name = new_name(f"{self.name}-{first_seq:015d}")
            written += write_atomic(part, folder, name, data_type, level=FLUSH_ZSTD_LEVEL)
            self.stats.files += 1
        return written

    # ---- state ------------------------------------------------------------------------

    def _touch(self, local_us: int) -> None:
        self._used = True
        if self._oldest_unflushed is None:
            self._oldest_unflushed = local_us

    def _state(self, *, clean: bool) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "written_at": self.clock(),
            "clean": clean,
            "tokens": dict(self.last_ts),
            "conditions": dict(self.conditions),
            "open_gaps": {t: [g.start, g.reason] for t, g in self.open_gaps.items()},
        }

    def _write_state(self, state: dict[str, Any]) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_name(f".{self._state_path.name}.tmp")
        with open(tmp, "wb") as fh:
            # msgspec: ~10x faster than json.dump's chunked encoding on the whole venue's
            # 46,000-token map (written on every flush); plain JSON either way
            fh.write(msgspec.json.encode(state))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._state_path)

    def _recover(self) -> None:
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error(
                "archive state unreadable; sequence numbers restart",
                path=str(self._state_path),
                error=str(exc),
            )
            return
        self.seq = int(state.get("seq", 0))
        for token_id, (start, reason) in state.get("open_gaps", {}).items():
            self.open_gaps[token_id] = OpenGap(int(start), str(reason))
        reason = "stopped" if state.get("clean") else "crash"
        self.conditions.update(state.get("conditions", {}))
        for token_id, ts in state.get("tokens", {}).items():
            if token_id not in self.open_gaps:
                self.open_gaps[token_id] = OpenGap(int(ts), reason)
            self.last_ts[token_id] = int(ts)
        if self.open_gaps:
            log.info(f"archive resumes after a {reason}", tokens=len(self.open_gaps), seq=self.seq)


def book_levels(levels: LevelMap) -> list[Level]:
    """An :class:`~polytape.books.OrderBook` side as ``(price, size)`` floats."""
    return [(p, level_size(fragment)) for p, fragment in levels.items()]
