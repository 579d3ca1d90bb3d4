"""Order-book benchmarks: apply throughput vs a naive baseline, and end-to-end lag.

1. End to end: the simulator (in a child process) emits ``price_change`` messages at a
   fixed rate over real sockets for a tracked universe of ~2,000 tokens; the feed
   persists them to SQLite; the lag from each message's server timestamp to the commit
   that stored it (p50/p99), messages never stored, and the feed's resident memory.
2. Decode + apply of recorded-shape (v2) ``price_change`` frames into book state, in
   level updates per second, for polytape's keeper (hash checks off and on) and for a
   naive baseline (``json.loads`` + a sorted list re-sorted after every update), in
   the same run on the same frames.

Usage: ``python benchmarks/bench_books.py [--quick] [--rate 2000] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing as mp
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polytape.bookfeed import BookFeed
from polytape.bookfeed.keeper import BookKeeper
from polytape.books import BookRegistry
from polytape.normalize.books import BookMsg, Level

NOW = datetime(2026, 9, 29, tzinfo=UTC)


# ---- 1. throughput ----------------------------------------------------------------------


def make_frames(n_tokens: int, n_msgs: int, rng: random.Random) -> tuple[list[BookMsg], list[str]]:
    """Snapshots of ``n_tokens`` books (pairs of mirrored tokens) and v2 frames changing them."""
    snaps, frames = [], []
    pairs = [(f"0x{i:064x}", str(10**70 + 2 * i), str(10**70 + 2 * i + 1)) for i in range(n_tokens // 2)]
    for cid, yes, no in pairs:
        bids = [Level(f"0.{p:02d}", str(rng.randint(5, 5000))) for p in range(20, 49)]
        asks = [Level(f"0.{p:02d}", str(rng.randint(5, 5000))) for p in range(80, 51, -1)]
        snaps.append(BookMsg(cid, yes, "1790658661234", bids, asks, "", "0.01", ""))
        mirror_b = [Level(f"0.{100 - int(a.price[2:]):02d}", a.size) for a in reversed(asks)]
        mirror_a = [Level(f"0.{100 - int(b.price[2:]):02d}", b.size) for b in reversed(bids)]
        snaps.append(BookMsg(cid, no, "1790658661234", mirror_b, mirror_a, "", "0.01", ""))
    for k in range(n_msgs):
        cid, yes, no = pairs[rng.randrange(len(pairs))]
        p = rng.randint(10, 90)
        size = "0" if rng.random() < 0.3 else str(round(rng.uniform(5, 9000), 2))
        side_yes = "BUY" if p < 50 else "SELL"
        side_no = "SELL" if side_yes == "BUY" else "BUY"
        changes = [
            {"asset_id": yes, "price": f"0.{p:02d}", "size": size, "side": side_yes,
             "hash": "b7623b6417b3ae46dbe5d608a65474c9cec84ef9", "best_bid": "0.48", "best_ask": "0.52"},
            {"asset_id": no, "price": f"0.{100 - p:02d}", "size": size, "side": side_no,
             "hash": "c0978ce48e525b35579b9fb4556a08538ebf265a", "best_bid": "0.48", "best_ask": "0.52"},
        ]  # fmt: skip
        ts = str(1790658674035 + k)
        frames.append(
            json.dumps(
                {"market": cid, "price_changes": changes, "timestamp": ts, "event_type": "price_change"}
            )
        )
    return snaps, frames


def bench_polytape(snaps: list[BookMsg], frames: list[str], verify: bool) -> float:
    registry = BookRegistry()
    for s in snaps:
        registry.track(s.asset_id, s.market)
    keeper = BookKeeper(registry, verify=verify)
    for s in snaps:
        book = registry.ensure(s.asset_id, s.market)
        book.min_order_size, book.neg_risk = "5", False
        book.apply_snapshot(s, NOW)
    t0 = time.perf_counter()
    for frame in frames:
        keeper.handle_frame(frame, NOW)
    elapsed = time.perf_counter() - t0
    assert keeper.stats.messages_total == len(frames)
    return elapsed


def bench_naive(snaps: list[BookMsg], frames: list[str]) -> float:
    """json.loads, then per update: find the level in a sorted list, change it, re-sort."""
    books: dict[str, dict[str, list[list[float]]]] = {}
    for s in snaps:
        books[s.asset_id] = {
            "BUY": sorted([[float(lvl.price), float(lvl.size)] for lvl in s.bids]),
            "SELL": sorted([[float(lvl.price), float(lvl.size)] for lvl in s.asks]),
        }
    t0 = time.perf_counter()
    for frame in frames:
        msg = json.loads(frame)
        for ch in msg["price_changes"]:
            levels = books[ch["asset_id"]][ch["side"]]
            price, size = float(ch["price"]), float(ch["size"])
            for i, level in enumerate(levels):
                if level[0] == price:
                    if size == 0:
                        del levels[i]
                    else:
                        level[1] = size
                    break
            else:
                if size > 0:
                    levels.append([price, size])
            levels.sort()
    return time.perf_counter() - t0


def throughput(n_msgs: int) -> dict[str, float]:
    rng = random.Random(7)
    snaps, frames = make_frames(2000, n_msgs, rng)
    updates = 2 * n_msgs
    out = {}
    for name, fn in [
        ("polytape (hash off)", lambda: bench_polytape(snaps, frames, False)),
        ("polytape (hash on)", lambda: bench_polytape(snaps, frames, True)),
        ("naive json + sorted list", lambda: bench_naive(snaps, frames)),
    ]:
        best = min(fn() for _ in range(3))
        out[name] = updates / best
    return out


# ---- 2. end-to-end lag ---------------------------------------------------------------------


def sim_process(conn: Any, n_events: int) -> None:
    """Child: serve a large world; on request emit price changes at a rate, then report them."""
    from polytape.sim import SimServer, World

    async def main() -> None:
        world = World(11, n_events=n_events, n_closed_events=0, history_days=0.02, trades_per_day=200)
        async with SimServer(world) as sim:
            live = [m for m in world.markets.values() if m.book is not None and not m.closed]
            urls = {
                "gamma": sim.gamma_url,
                "data": sim.data_api_url,
                "clob": sim.clob_url,
                "ws": sim.clob_ws_url,
            }
            conn.send((urls, {m.condition_id: list(m.token_ids) for m in live}))
            rate, seconds = await asyncio.to_thread(conn.recv)
            rng = random.Random(3)
            sent: list[tuple[str, int]] = []  # (condition id, timestamp ms) of every price_change
            world.add_listener(
                lambda ev: sent.append((ev.condition_id, ev.timestamp_ms)) if hasattr(ev, "changes") else None
            )
            start = time.monotonic()
            tick = 0.01
            k = 0
            while time.monotonic() - start < seconds:
                due = int((time.monotonic() - start) * rate) - k
                now_ms = int(time.time() * 1000)
                for _ in range(max(0, due)):
                    market = live[rng.randrange(len(live))]
                    world._random_level_changes(market, max(now_ms, market.book.timestamp_ms))  # type: ignore[union-attr]
                    k += 1
                await asyncio.sleep(tick)
            await asyncio.sleep(3)  # let the sockets drain
            tokens = {m.condition_id: list(m.token_ids) for m in live}
            conn.send({"sent": sent, "tokens": tokens, "books": world.books})
            await asyncio.to_thread(conn.recv)

    asyncio.run(main())


REPO_DIR = str(Path(__file__).resolve().parent.parent)  # for tests.support


async def lag_run(rate: int, seconds: float, n_events: int) -> dict[str, Any]:
    sys.path.insert(0, REPO_DIR)
    from polytape.app import job_context
    from polytape.config import load_settings
    from polytape.store import Store
    from polytape.store.universe import tracked_tokens
    from tests.support.stored_books import latest_books  # type: ignore[import-not-found]

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=sim_process, args=(child, n_events), daemon=True)
    proc.start()
    urls, universe = parent.recv()
    tmp = Path(tempfile.mkdtemp()) / "bench.db"
    settings = load_settings(
        database_url=f"sqlite:///{tmp}", gamma_url=urls["gamma"], data_api_url=urls["data"],
        clob_url=urls["clob"], clob_ws_url=urls["ws"], log_level="WARNING",
    )  # fmt: skip
    store = Store.open(settings.database_url)
    flushes: list[tuple[float, dict[str, int]]] = []
    rss_samples: list[float] = [_rss_mb()]
    async with job_context(settings, store) as ctx:
        seed_universe(store, universe, ctx.clock())
        tokens = tracked_tokens(store)
        feed = BookFeed(settings, store, ctx.clients.clob, runtime=ctx.runtime, clock=ctx.clock)
        feed.writer.on_flush = lambda at, stamps: flushes.append((at.timestamp() * 1000, stamps))
        task = asyncio.create_task(feed.run())
        rss = asyncio.create_task(_sample_rss(rss_samples))
        while len(feed.registry) < len(tokens) * 0.95:  # noqa: ASYNC110 - polling the feed's state
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # settle: the start-up REST snapshots are in
        parent.send((rate, seconds))
        report = await asyncio.to_thread(parent.recv)
        await asyncio.sleep(2)
        await feed.stop()
        await task
        rss.cancel()
        stored = latest_books(store, list(tokens))
    parent.send("bye")
    proc.join(5)
    # every message: its first covering commit, per tracked token of its market
    stamps_by_token: dict[str, tuple[list[int], list[float]]] = {}
    for at, stamps in flushes:
        for tok, ms in stamps.items():
            st = stamps_by_token.setdefault(tok, ([], []))
            st[0].append(ms)
            st[1].append(at)
    lags, lost = [], 0
    for cid, ts in report["sent"]:
        for tok in report["tokens"].get(cid, []):
            if tok not in tokens:
                continue
            ms_list, at_list = stamps_by_token.get(tok, ([], []))
            best = None  # stamps are per flush in time order; the first flush with stamp >= ts
            i = bisect.bisect_left(_running_max(ms_list), ts)
            if i < len(ms_list):
                best = at_list[i]
            if best is None:
                lost += 1
            else:
                lags.append((best - ts) / 1000)
    wrong = 0
    for tok in tokens:
        truth = report["books"].get(tok)
        got = stored.get(tok)
        if truth is None:
            continue
        tb = sorted(((float(x["price"]), float(x["size"])) for x in truth["bids"]), reverse=True)
        ta = sorted((float(x["price"]), float(x["size"])) for x in truth["asks"])
        if got is None or (got.bids, got.asks) != (tb, ta):
            wrong += 1
    lags.sort()
    return {
        "tokens": len(tokens),
        "messages_sent": len(report["sent"]),
        "rate_achieved": round(len(report["sent"]) / seconds),
        "level_messages_measured": len(lags),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p99_s": round(lags[int(len(lags) * 0.99)], 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
        "lost": lost,
        "books_differing_at_end": wrong,
        "rss_before_feed_mb": round(rss_samples[0], 1),
        "rss_peak_mb": round(max(rss_samples), 1),
        "hash_mismatches": feed.keeper.stats.hash_mismatches,
        "resyncs": dict(feed.healer.performed),
        "stale_deltas": feed.keeper.stats.stale_deltas,
        "unknown_book_deltas": feed.keeper.stats.unknown_book_deltas,
        "reconnects": sum(ch.reconnects for ch in feed.channels.values()),
        "flushes": len(flushes),
    }


def seed_universe(store: Any, universe: dict[str, list[str]], now: datetime) -> None:
    """Track every market of the child's world (its Gamma pages are slow at this size)."""
    from polytape.store.schema import market_tokens, tracked_markets

    tokens = [
        {"token_id": t, "condition_id": cid, "outcome": str(i), "outcome_index": i}
        for cid, ids in universe.items()
        for i, t in enumerate(ids)
    ]
    tracked = [{"condition_id": cid, "source": "manual", "selected_at": now} for cid in universe]
    store.insert_ignore(market_tokens, tokens)
    store.insert_ignore(tracked_markets, tracked)


def _rss_mb() -> float:
    """Resident memory of this process now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _sample_rss(samples: list[float]) -> None:
    while True:
        samples.append(_rss_mb())
        await asyncio.sleep(0.5)


def _running_max(values: list[int]) -> list[int]:
    out, top = [], -1
    for v in values:
        top = max(top, v)
        out.append(top)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer messages, 10 s of lag)")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--events", type=int, default=480, help="simulated events (~2 markets each)")
    ap.add_argument("--skip-lag", action="store_true")
    args = ap.parse_args()
    if not args.skip_lag:  # first, so its memory figures are not the throughput test's
        seconds = 10.0 if args.quick else args.seconds
        print(f"1. end-to-end lag at {args.rate} msgs/s for {seconds:g}s (simulator in a child process)")
        out = asyncio.run(lag_run(args.rate, seconds, args.events))
        for key, value in out.items():
            print(f"   {key:26s} {value}")
        sys.stdout.flush()
    n_msgs = 50_000 if args.quick else 200_000
    print(f"2. decode + apply of {n_msgs:,} v2 price_change frames (2 level updates each), best of 3")
    results = throughput(n_msgs)
    base = results["naive json + sorted list"]
    for name, ups in results.items():
        print(f"   {name:26s} {ups:12,.0f} level updates/s  ({ups / base:4.1f}x baseline)")


if __name__ == "__main__":
    main()
