"""Archive benchmarks: write path, bytes on disk, replay of a token-hour, memory.

Data: one simulated hour of polytape's simulator (``World``), every book event it emits
turned into the calls the feed makes (``record_deltas`` for ``price_change``,
``record_snapshot`` for ``book``, ``record_last_trade``), plus the checkpoint snapshots
the feed writes every five minutes. Each figure is set against a naive writer in the
same run: rows as dicts, one ``pyarrow`` table and one Parquet file (library defaults)
per flush, and a replay that reads the whole hour and applies everything from its start.

1. Write path: level updates per second through the recording calls, flushes included
   (Parquet zstd on disk), on one core.
2. On disk: bytes per level update once the hour is compacted (checkpoint rows cost
   bytes but are not counted as updates).
3. Replay: ``book_at`` of the busiest token at random moments of the hour.
4. Memory: Python (tracemalloc) plus Arrow peak while 2,000 tokens record for one flush
   interval at the whole venue's public-archive rate (24.24M updates/hour) and flush.

Times are CPU seconds of this process (``time.process_time``), so other work on the
machine does not skew them; both writers are timed the same way.

Usage: ``python benchmarks/bench_archive.py [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from polytape.archive.compaction import compact
from polytape.archive.reader import book_at
from polytape.archive.schema import HOUR_US, L2, partitions
from polytape.archive.service import BookArchive
from polytape.sim import World, payloads
from polytape.sim.model import BookEvent, PriceChangeEvent, TradeEvent

FLUSH_ROWS = round(24_240_000 / 360)  # 10 s of the whole venue at the public archive's rate
HOUR_START = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # seconds, on an hour boundary
FLUSH_S = 10.0
CHECKPOINT_S = 300.0
Call = tuple[Any, ...]


# ---- the data: one simulated hour as the feed's calls ------------------------------------


def simulate_hour(steps: int, seed: int = 11) -> tuple[list[Call], int]:
    """The feed's recording calls for one simulated hour, and the level updates among them."""
    world = World(seed, n_events=60, now=HOUR_START)
    calls: list[Call] = []
    updates = 0
    dt = 3600.0 / steps
    changed: set[str] | None = None  # None: the first pass snapshots every book (the subscription dump)

    def listen(event: Any) -> None:
        nonlocal updates
        if isinstance(event, PriceChangeEvent):
            per: dict[str, list[tuple[str, str, str]]] = {}
            last: dict[str, str] = {}
            for ch in event.changes:
                per.setdefault(ch.asset_id, []).append((ch.side, ch.price, ch.size))
                last[ch.asset_id] = ch.hash
            for token, changes in per.items():
                calls.append(("delta", token, event.condition_id, event.timestamp_ms, changes, last[token]))
                updates += len(changes)
                if changed is not None:
                    changed.add(token)
        elif isinstance(event, BookEvent):
            market = world.markets[event.condition_id]
            if market.book is None:
                return
            for index, token in enumerate(market.token_ids):
                bids, asks = market.book.levels(index)
                b = [(float(x["price"]), float(x["size"])) for x in bids]
                a = [(float(x["price"]), float(x["size"])) for x in asks]
                digest = payloads.clob_book(market, index, rest=False)["hash"]
                calls.append(("book", token, market.condition_id, market.book.timestamp_ms, b, a, digest))
                updates += len(b) + len(a)
                if changed is not None:
                    changed.discard(token)
        elif isinstance(event, TradeEvent):
            f = event.fill
            calls.append(
                (
                    "trade",
                    f.asset,
                    f.condition_id,
                    event.timestamp_ms,
                    str(f.price),
                    f.side,
                    str(f.size),
                    f.transaction_hash,
                )
            )

    world.add_listener(listen)
    next_cp = HOUR_START
    for i in range(steps):
        now = HOUR_START + i * dt
        if now >= next_cp:  # the feed's checkpoint pass: books that changed since their snapshot
            for market in world.markets.values():
                if market.book is None or market.closed:
                    continue
                for index, token in enumerate(market.token_ids):
                    if changed is not None and token not in changed:
                        continue
                    bids, asks = market.book.levels(index)
                    b = [(float(x["price"]), float(x["size"])) for x in bids]
                    a = [(float(x["price"]), float(x["size"])) for x in asks]
                    calls.append(("checkpoint", token, market.condition_id, int(now * 1000), b, a, ""))
            changed = set()
            next_cp += CHECKPOINT_S
        world.step(now)
    return calls, updates


# ---- polytape's writer and the naive one ------------------------------------------------------


def run_polytape(calls: list[Call], root: Path) -> tuple[float, int]:
    archive = BookArchive(root, flush_seconds=FLUSH_S, checkpoint_seconds=CHECKPOINT_S, name="bench")
    w = archive.writer
    received_at = [datetime.fromtimestamp((c[3] + 5) / 1000, UTC) for c in calls]  # the feed has these
    t0 = time.process_time()
    for i, c in enumerate(calls):
        kind, token, cond, ts = c[0], c[1], c[2], c[3]
        if i % 256 == 0 and w.buffered_rows >= FLUSH_ROWS:
            w.write(w.detach())
        received = received_at[i]
        if kind == "delta":
            archive.record_deltas(token, cond, ts, received, c[4], c[5], True, "ws-1")
        elif kind == "book":
            w.record_snapshot(token, cond, ts * 1000, ts * 1000 + 5000, c[4], c[5], c[6], True, "ws-1")
        elif kind == "checkpoint":
            w.record_snapshot(
                token, cond, ts * 1000, ts * 1000, c[4], c[5], "", True, "checkpoint", heal=False
            )
        else:
            archive.record_last_trade(token, cond, ts, received, c[4], c[5], c[6], c[7])
    w.write(w.detach())
    return time.process_time() - t0, w.stats.rows[L2]


SIDES = {"BUY": "bid", "SELL": "ask"}


def run_naive(calls: list[Call], root: Path) -> tuple[float, int]:
    """Rows as dicts; one table and one default Parquet file per flush."""
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seq = files = 0

    trades: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal rows, files, trades
        if rows:
            pq.write_table(pa.Table.from_pylist(rows), root / f"part-{files:05d}.parquet")
            files += 1
            rows = []
        if trades:
            (root / "trades").mkdir(exist_ok=True)
            pq.write_table(pa.Table.from_pylist(trades), root / "trades" / f"part-{files:05d}.parquet")
            trades = []

    t0 = time.process_time()
    total = 0
    for c in calls:
        kind, token, cond, ts = c[0], c[1], c[2], c[3]
        if len(rows) >= FLUSH_ROWS:
            flush()
        if kind == "trade":
            trades.append(
                {
                    "token_id": token,
                    "condition_id": cond,
                    "timestamp": ts * 1000,
                    "local_timestamp": ts * 1000 + 5000,
                    "id": c[7] or "",
                    "side": c[5].lower(),
                    "price": float(c[4]),
                    "amount": float(c[6]),
                }
            )
            continue
        if kind == "delta":
            levels = [(SIDES[s], float(p), float(z)) for s, p, z in c[4]]
            digest, snap = c[5], False
        else:
            levels = [("bid", p, z) for p, z in c[4]] + [("ask", p, z) for p, z in c[5]]
            digest, snap = c[6], True
        for side, price, amount in levels:
            seq += 1
            rows.append(
                {
                    "token_id": token,
                    "condition_id": cond,
                    "timestamp": ts * 1000,
                    "local_timestamp": ts * 1000 + 5000,
                    "is_snapshot": snap,
                    "side": side,
                    "price": price,
                    "amount": amount,
                    "hash": digest,
                    "verified": True,
                    "connection_id": "ws-1",
                    "seq": seq,
                }
            )
        total += len(levels)
    flush()
    return time.process_time() - t0, total


def size_of(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


# ---- replay -------------------------------------------------------------------------------------


def naive_book_at(path: Path, token: str, at_us: int) -> tuple[list[Any], list[Any]]:
    """Read the whole hour, keep the token's rows up to ``at``, apply them all from the start."""
    table = pq.read_table(path)
    rows = [r for r in table.to_pylist() if r["token_id"] == token and r["timestamp"] <= at_us]
    rows.sort(key=lambda r: r["seq"])
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for i, r in enumerate(rows):
        if r["is_snapshot"] and (i == 0 or not rows[i - 1]["is_snapshot"]):
            bids, asks = {}, {}  # a new snapshot replaces the book
        levels = bids if r["side"] == "bid" else asks
        if r["amount"] > 0:
            levels[r["price"]] = r["amount"]
        else:
            levels.pop(r["price"], None)
    return sorted(bids.items(), reverse=True), sorted(asks.items())


# ---- memory --------------------------------------------------------------------------------------


def memory_2000_tokens(rng: random.Random, tmp: Path) -> tuple[float, float, int]:
    """Peak MB (Python + Arrow) of polytape's writer and the naive one, and rows per flush."""
    tokens = [(str(10**70 + i), f"0x{i // 2:064x}") for i in range(2000)]
    per_flush = round(24_240_000 / 3600 * FLUSH_S)  # the whole venue's rate, one flush interval
    ts0 = int(HOUR_START * 1000)
    msgs = []
    n = 0
    while n < per_flush:
        token, cond = tokens[rng.randrange(2000)]
        k = rng.randint(1, 3)
        changes = [
            (rng.choice(("BUY", "SELL")), f"0.{rng.randint(1, 99):02d}", str(rng.randint(0, 9000)))
            for _ in range(k)
        ]
        msgs.append((token, cond, ts0 + n // 7, changes, f"{rng.getrandbits(160):040x}"))
        n += k
    received = datetime.fromtimestamp(ts0 / 1000, UTC)
    pool = pa.default_memory_pool()

    def measure(fn: Any) -> float:
        base_arrow = pool.max_memory() or 0
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return (peak + max(0, (pool.max_memory() or 0) - base_arrow)) / 1e6

    def ours() -> None:
        archive = BookArchive(tmp / "mem", flush_seconds=FLUSH_S, name="mem")
        for token, cond in tokens:  # every token has a snapshot and a gap ledger entry
            archive.writer.record_snapshot(
                token,
                cond,
                ts0 * 1000,
                ts0 * 1000,
                [(0.4, 100.0)] * 20,
                [(0.6, 100.0)] * 20,
                "h",
                True,
                "ws-1",
            )
        for token, cond, ts, changes, digest in msgs:
            archive.record_deltas(token, cond, ts, received, changes, digest, True, "ws-1")
        archive.writer.flush()

    def naive() -> None:
        rows = []
        for seq, (token, cond, ts, changes, digest) in enumerate(msgs):
            for s, p, z in changes:
                rows.append(
                    {
                        "token_id": token,
                        "condition_id": cond,
                        "timestamp": ts * 1000,
                        "local_timestamp": ts * 1000,
                        "is_snapshot": False,
                        "side": SIDES[s],
                        "price": float(p),
                        "amount": float(z),
                        "hash": digest,
                        "verified": True,
                        "connection_id": "ws-1",
                        "seq": seq,
                    }
                )
        (tmp / "memnaive").mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "memnaive" / "x.parquet")

    return measure(ours), measure(naive), n


# ---- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a shorter hour (fewer world steps)")
    args = parser.parse_args()
    steps = 1200 if args.quick else 5000
    rng = random.Random(1)
    print(f"simulating one hour ({steps} world steps)...", flush=True)
    calls, updates = simulate_hour(steps)
    print(f"  {len(calls)} recording calls, {updates} level updates (+ checkpoints)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ours_s, ours_rows = run_polytape(calls, tmp / "ours")
        naive_s, naive_rows = run_naive(calls, tmp / "naive")
        print(f"\n1. write path (level updates/s, one core, a flush every {FLUSH_ROWS:,} rows included)")
        print(
            f"  polytape {ours_rows / ours_s:>12,.0f} /s   naive {naive_rows / naive_s:>12,.0f} /s"
            f"   ratio {(ours_rows / ours_s) / (naive_rows / naive_s):.2f}x   (target >= 300,000 /s)"
        )

        flushed = size_of(tmp / "ours" / L2)
        t = time.process_time()
        compact(tmp / "ours", int((HOUR_START + 3 * 3600) * 1e6))
        compact_s = time.process_time() - t
        ours_bytes = size_of(tmp / "ours" / L2)
        naive_bytes = sum(p.stat().st_size for p in (tmp / "naive").glob("*.parquet"))  # L2 only
        merged = tmp / "naive-hour.parquet"
        pq.write_table(
            pa.concat_tables([pq.read_table(p) for p in sorted((tmp / "naive").glob("*.parquet"))]), merged
        )
        print("\n2. on disk (bytes per level update)")
        print(
            f"  polytape compacted {ours_bytes / updates:6.2f} B   as flushed {flushed / updates:6.2f} B"
            f"   (compaction of the hour {compact_s:.2f} s)"
        )
        print(
            f"  naive per flush    {naive_bytes / updates:6.2f} B   naive one file/hour"
            f" {merged.stat().st_size / updates:6.2f} B   ratio {naive_bytes / ours_bytes:.1f}x smaller"
            "   (target <= 12 B; public archive ~20 B)"
        )

        counts: dict[str, int] = {}
        for c in calls:
            if c[0] in ("delta", "book"):
                counts[c[1]] = counts.get(c[1], 0) + 1
        token = max(counts, key=lambda k: counts[k])
        hour = int(HOUR_START * 1e6)
        moments = [hour + rng.randrange(HOUR_US) for _ in range(10)] + [hour + HOUR_US - 1]
        ours_t, naive_t = [], []
        for at in moments:
            t = time.process_time()
            got = book_at(tmp / "ours", token, at)
            ours_t.append(time.process_time() - t)
            t = time.process_time()
            naive_book_at(merged, token, at)
            naive_t.append(time.process_time() - t)
            assert got.found
        print(
            f"\n3. replay of one token-hour (busiest token: {counts[token]} messages, {len(moments)} moments)"
        )
        print(
            f"  polytape median {statistics.median(ours_t) * 1000:7.1f} ms  max {max(ours_t) * 1000:7.1f} ms"
            f"   naive median {statistics.median(naive_t) * 1000:7.1f} ms"
            f"   ratio {statistics.median(naive_t) / statistics.median(ours_t):.1f}x   (target <= 500 ms)"
        )
        hours = [h for h, _ in partitions(tmp / "ours", L2)]
        assert hours, "nothing written"

        ours_mb, naive_mb, rows = memory_2000_tokens(rng, tmp)
        print(
            f"\n4. memory with 2,000 tokens ({rows:,} level updates buffered for one {FLUSH_S:.0f} s flush)"
        )
        print(
            f"  polytape {ours_mb:6.1f} MB   naive {naive_mb:6.1f} MB   ratio {naive_mb / ours_mb:.1f}x"
            "   (target <= 50 MB)"
        )


if __name__ == "__main__":
    main()
