"""Venue-scale benchmarks (issue 14): the hot path of the book feed and trade inserts.

Sections (each can run alone; ``all`` runs them in turn):

- ``apply``: decode + apply + verify of pre-generated v2 ``price_change`` frames on
  books of 80 levels a side, with real hashes, in level updates per second on one core.
  Compared in the same run: hash checks off; every message checked with the old
  full-rebuild hash (the previous code); every message checked with the incremental
  hash; and the deferred scheme (each changed book checked at least once per second of
  wall time, plus the cheap best bid/ask check on every message).

Usage: ``python benchmarks/bench_scale.py apply [--tokens 2000] [--frames 100000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from polytape.bookfeed.keeper import BookKeeper
from polytape.books import BookRegistry, OrderBook
from polytape.normalize.books import BookMsg, Level

T0_MS = 1790658661234
NOW = datetime(2026, 9, 29, tzinfo=UTC)


# ---- pre-generated venue ------------------------------------------------------------------


def venue_books(n_tokens: int, levels: int, rng: random.Random) -> tuple[list[BookMsg], dict[str, OrderBook]]:
    """``n_tokens`` books (mirrored pairs) of ``levels`` levels a side, with their true state."""
    snaps: list[BookMsg] = []
    truth: dict[str, OrderBook] = {}
    for i in range(n_tokens // 2):
        cid = f"0x{i:064x}"
        yes, no = str(10**76 + 2 * i), str(10**76 + 2 * i + 1)
        # prices on a 0.001 tick: bids below 0.5, asks above, ``levels`` each
        bids = [Level(f"{(500 - levels + k) / 1000:.3f}", str(rng.randint(5, 5000))) for k in range(levels)]
        asks = [Level(f"{(500 + levels - k) / 1000:.3f}", str(rng.randint(5, 5000))) for k in range(levels)]
        for token, b, a in ((yes, bids, asks), (no, _mirror(asks), _mirror(bids))):
            book = OrderBook(token, cid)
            book.min_order_size, book.neg_risk = "5", False
            msg = BookMsg(cid, token, str(T0_MS), b, a, tick_size="0.001", last_trade_price="0.5")
            book.apply_snapshot(msg, NOW)
            book.last_trade_price = "0.5"
            msg.hash = book.compute_hash() or ""
            snaps.append(msg)
            truth[token] = book
    return snaps, truth


def _mirror(levels: list[Level]) -> list[Level]:
    """The other outcome's side: price 1 − p, order reversed (still server order)."""
    return [Level(f"{1 - float(lvl.price):.3f}", lvl.size) for lvl in reversed(levels)]


def change_frames(truth: dict[str, OrderBook], n_frames: int, rng: random.Random) -> list[bytes]:
    """v2 frames: each changes one level of a market's YES book and its mirror in NO.

    Hashes and best prices are computed on the true books as the server would, before
    any timing starts.
    """
    tokens = sorted(truth)
    pairs = [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2)]
    frames: list[bytes] = []
    enc = msgspec.json.Encoder()
    for k in range(n_frames):
        yes, no = pairs[rng.randrange(len(pairs))]
        ts = str(T0_MS + 1 + k)
        tick = rng.randint(380, 620)
        side = "BUY" if tick <= 500 else "SELL"
        size = "0" if rng.random() < 0.25 else str(rng.randint(1, 9000))
        entries = []
        for token, price, s in ((yes, tick, side), (no, 1000 - tick, "SELL" if side == "BUY" else "BUY")):
            book = truth[token]
            p = f"{price / 1000:.3f}"
            book.apply_change(s, p, size, ts)
            entries.append(
                {"asset_id": token, "price": p, "size": size, "side": s, "hash": book.compute_hash(),
                 "best_bid": str(book.best_bid or 0), "best_ask": str(book.best_ask or 0)}
            )  # fmt: skip
        cid = truth[yes].condition_id
        msg = {"market": cid, "price_changes": entries, "timestamp": ts, "event_type": "price_change"}
        frames.append(enc.encode(msg))
    return frames


# ---- apply --------------------------------------------------------------------------------


def _old_full_rebuild_hash(self: OrderBook) -> str | None:
    """The previous construction (for the baseline): dict payload, two sorts, encode, SHA-1."""
    if self.min_order_size is None or self.neg_risk is None or self.tick_size is None:
        return None
    payload = {
        "market": self.condition_id,
        "asset_id": self.token_id,
        "timestamp": self.timestamp,
        "hash": "",
        "bids": [{"price": v[0], "size": v[1]} for _, v in sorted(self.bids.items())],
        "asks": [{"price": v[0], "size": v[1]} for _, v in sorted(self.asks.items(), reverse=True)],
        "min_order_size": self.min_order_size,
        "tick_size": self.tick_size,
        "neg_risk": self.neg_risk,
        "last_trade_price": self.last_trade_price,
    }
    return hashlib.sha1(msgspec.json.encode(payload)).hexdigest()


def run_apply(
    snaps: list[BookMsg], frames: list[bytes], *, verify: bool, within: float, old_hash: bool = False
) -> dict[str, Any]:
    registry = BookRegistry()
    for s in snaps:
        registry.track(s.asset_id, s.market)
    keeper = BookKeeper(registry, verify=verify, verify_within=within)
    for s in snaps:
        book = registry.ensure(s.asset_id, s.market)
        book.min_order_size, book.neg_risk = "5", False
        book.apply_snapshot(s, NOW)
    saved: Callable[[OrderBook], str | None] = OrderBook.compute_hash
    if old_hash:
        OrderBook.compute_hash = _old_full_rebuild_hash  # type: ignore[method-assign]
    clock = time.time
    try:
        t0 = time.perf_counter()
        c0 = time.process_time()
        for frame in frames:
            keeper.handle_frame(frame, datetime.fromtimestamp(clock(), UTC))
        keeper.verify_due(datetime.fromtimestamp(clock() + within + 1, UTC))  # the last ones
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
    finally:
        OrderBook.compute_hash = saved  # type: ignore[method-assign]
    stats = keeper.stats
    assert stats.messages_total == len(frames)
    unverified = [t for t, b in registry.books.items() if verify and b.check_pending]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "updates_per_s": 2 * len(frames) / wall,
        "updates_per_cpu_s": 2 * len(frames) / cpu,
        "checks": stats.hash_checks,
        "mismatches": stats.hash_mismatches,
        "top_mismatches": stats.top_mismatches,
        "left_unchecked": len(unverified),
        "all_verified": verify and all(b.verified for b in registry.books.values()),
    }


def bench_apply(args: argparse.Namespace) -> None:
    rng = random.Random(14)
    t = time.perf_counter()
    snaps, truth = venue_books(args.tokens, args.levels, rng)
    frames = change_frames(truth, args.frames, rng)
    print(
        f"apply: {args.tokens:,} tokens, {args.levels} levels a side, {len(frames):,} v2 frames "
        f"({2 * len(frames):,} level updates), made in {time.perf_counter() - t:.1f}s; best of {args.repeat}"
    )
    variants: list[tuple[str, dict[str, Any]]] = [
        ("hash checks off", {"verify": False, "within": 0.0}),
        ("every message, old full rebuild", {"verify": True, "within": 0.0, "old_hash": True}),
        ("every message, incremental", {"verify": True, "within": 0.0}),
        ("deferred <=1s + top check", {"verify": True, "within": 1.0}),
        ("deferred <=0.5s + top check", {"verify": True, "within": 0.5}),
    ]
    base = None
    for name, kw in variants:
        runs = [run_apply(snaps, frames, **kw) for _ in range(args.repeat)]
        best = max(runs, key=lambda r: r["updates_per_cpu_s"])
        if base is None and kw.get("old_hash"):
            base = best["updates_per_cpu_s"]
        ratio = f"{best['updates_per_cpu_s'] / base:5.1f}x old" if base else "         "
        print(
            f"   {name:34s} {best['updates_per_cpu_s']:10,.0f} updates/CPU-s  {ratio}  "
            f"checks={best['checks']:,} mismatches={best['mismatches']} "
            f"left_unchecked={best['left_unchecked']}"
        )
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = ap.add_subparsers(dest="section", required=True)
    ap_apply = sub.add_parser("apply", help="decode + apply + verify throughput")
    ap_apply.add_argument("--tokens", type=int, default=2000)
    ap_apply.add_argument("--levels", type=int, default=80)
    ap_apply.add_argument("--frames", type=int, default=100_000)
    ap_apply.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.section == "apply":
        bench_apply(args)


if __name__ == "__main__":
    main()
