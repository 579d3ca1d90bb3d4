"""Signal engine benchmark.

1. One evaluation pass over 2,000 tracked markets with full books (20 levels a side)
   and 100,000 recent trades: the first (cold) catch-up, then steady passes 45 s apart
   (the job's cadence), each seeing 200 new trades and 200 books the feed rewrote since
   the previous pass (p50 / p90 over several passes). Every book stays fresh enough to be
   evidence (``signal_book_max_age_seconds`` = 1 h), so all 2,000 markets are candidates.
   On PostgreSQL the tables are ANALYZEd after seeding, as autovacuum does in production.
2. The lag from a simulator book update that opens a neg-risk arbitrage to its
   committed ``signal_events`` row, through the real WebSocket feed and the engine's
   event-driven path (p50 / p99).

Run: ``.venv/bin/python benchmarks/bench_signals.py [--database-url URL] [--passes N] [--lags N]``
(default: a fresh SQLite file in a temporary directory; a PostgreSQL URL gets a throwaway
schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from polytape.config import load_settings
from polytape.signals.engine import SignalEngine
from polytape.store import Store
from polytape.store.schema import (
    events,
    market_tokens,
    markets,
    orderbook_levels,
    orderbooks,
    trades,
)

N_MARKETS = 2_000
N_TRADES = 100_000
LEVELS = 20
PASS_SPACING = timedelta(seconds=45)
BOOKS_PER_PASS = 200
NEG_RISK_EVENTS = 100  # x 4 markets; the other 1,600 markets stand alone
ARB_MARKETS = 5  # books seeded with a complement arb, so levels are read and walked


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def seed_store(store: Store, now: datetime, rng: random.Random) -> None:
    """Markets, tokens, events, fresh books and 100k trades of the last hour."""
    mrows, trows, erows, brows, lrows = [], [], [], [], []
    for e in range(NEG_RISK_EVENTS):
        erows.append(
            {
                "event_id": f"e{e}",
                "title": f"Event {e}",
                "neg_risk": True,
                "first_seen_at": now,
                "updated_at": now,
            }
        )
    for i in range(N_MARKETS):
        cid = f"0x{i:064x}"
        event_id = f"e{i // 4}" if i < NEG_RISK_EVENTS * 4 else f"s{i}"
        mrows.append(
            {
                "condition_id": cid,
                "gamma_market_id": str(i),
                "event_id": event_id,
                "question": f"Market {i}?",
                "neg_risk": i < NEG_RISK_EVENTS * 4,
                "closed": False,
                "active": True,
                "first_seen_at": now,
                "updated_at": now,
            }
        )
        fair = 0.25 if i < NEG_RISK_EVENTS * 4 else rng.uniform(0.05, 0.95)
        for idx in (0, 1):
            tid = f"{i}{idx}"
            trows.append(
                {
                    "token_id": tid,
                    "condition_id": cid,
                    "outcome": "Yes" if idx == 0 else "No",
                    "outcome_index": idx,
                }
            )
            p = fair if idx == 0 else 1 - fair
            bid, ask = round(p - 0.02, 2), round(p + 0.02, 2)
            if i < ARB_MARKETS:
                bid, ask = round(p - 0.04, 2), round(p - 0.02, 2)  # both asks low: a complement arb
            brows.append(
                {
                    "token_id": tid,
                    "condition_id": cid,
                    "best_bid": bid,
                    "best_ask": ask,
                    "source": "ws",
                    "updated_at": now,
                }
            )
            for k in range(LEVELS):
                lrows.append(
                    {
                        "token_id": tid,
                        "side": "BUY",
                        "price": round(bid - k * 0.001, 3),
                        "size": 100.0 + k,
                        "updated_at": now,
                    }
                )
                lrows.append(
                    {
                        "token_id": tid,
                        "side": "SELL",
                        "price": round(ask + k * 0.001, 3),
                        "size": 100.0 + k,
                        "updated_at": now,
                    }
                )
    store.write(
        lambda tx: [
            tx.insert_ignore(t, r)
            for t, r in ((events, erows), (markets, mrows), (market_tokens, trows), (orderbooks, brows))
        ]
    )
    store.write(lambda tx: tx.insert_ignore(orderbook_levels, lrows))
    add_trades(store, now, rng, N_TRADES, 0, spread=timedelta(minutes=55))


def add_trades(
    store: Store, now: datetime, rng: random.Random, n: int, start: int, spread: timedelta
) -> None:
    rows = []
    for k in range(start, start + n):
        i = rng.randrange(N_MARKETS)
        price = round(rng.uniform(0.3, 0.7), 2)
        size = round(rng.uniform(20_000, 60_000), 2)
        rows.append(
            {
                "dedupe_key": f"t{k}",
                "transaction_hash": f"0x{k:064x}",
                "wallet": f"0xw{rng.randrange(5000)}",
                "condition_id": f"0x{i:064x}",
                "token_id": f"{i}0",
                "side": "BUY",
                "outcome": "Yes",
                "outcome_index": 0,
                "size": size,
                "price": price,
                "usd_value": size * price,
                "trade_ts": now - spread * rng.random(),
                "source": "bench",
                "ingested_at": now,
            }
        )
    store.write(lambda tx: tx.insert_ignore(trades, rows))


def touch_books(store: Store, when: datetime, rng: random.Random, n: int) -> None:
    """The feed rewrote ``n`` books (new sizes at the same prices) at ``when``."""
    tokens = [f"{i}{idx}" for i in rng.sample(range(N_MARKETS), n // 2) for idx in (0, 1)]
    stmt = orderbooks.update().where(orderbooks.c.token_id.in_(tokens)).values(updated_at=when)
    store.write(lambda tx: tx.execute(stmt))


def analyze(store: Store) -> None:
    """Refresh the planner's statistics on PostgreSQL (autovacuum's job in production)."""
    if store.url.startswith("postgresql"):
        with store.engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()


def bench_pass(url: str, passes: int) -> dict[str, float]:
    store = Store.open(url, batch_size=5000)
    settings = load_settings(database_url=url, signal_book_max_age_seconds=3600)
    now = datetime.now(UTC)
    rng = random.Random(8)
    t0 = time.perf_counter()
    seed_store(store, now, rng)
    analyze(store)
    print(
        f"seeded {N_MARKETS} markets, {N_MARKETS * 2 * LEVELS * 2} levels, {N_TRADES} trades "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    engine = SignalEngine(store, settings)
    t0 = time.perf_counter()
    cold = engine.evaluate(now)
    seen, wrote = cold.trades_seen, len(cold.written)
    while cold.more_trades:  # a pass takes at most MAX_TRADES_PER_PASS; the rest is a backlog
        cold = engine.evaluate(now)
        seen, wrote = seen + cold.trades_seen, wrote + len(cold.written)
    cold_s = time.perf_counter() - t0
    print(f"catch-up passes (all {seen} trades new): {cold_s * 1000:.0f} ms, wrote {wrote} signals")
    timings = []
    for k in range(passes):
        when = now + PASS_SPACING * (k + 1)
        add_trades(store, when, rng, 200, N_TRADES + k * 200, spread=timedelta(seconds=30))
        touch_books(store, when - timedelta(seconds=1), rng, BOOKS_PER_PASS)
        t0 = time.perf_counter()
        result = engine.evaluate(when)
        timings.append(time.perf_counter() - t0)
        assert result.trades_seen == 200, result.trades_seen
    store.close()
    return {
        "cold_ms": cold_s * 1000,
        "p50_ms": statistics.median(timings) * 1000,
        "p90_ms": pct(timings, 90) * 1000,
    }


@contextmanager
def throwaway_db(url: str | None, tmp: str, name: str) -> Iterator[str]:
    """A fresh SQLite file, or a fresh schema of the PostgreSQL database at ``url``."""
    if url is None or not url.startswith("postgresql"):
        yield url or f"sqlite:///{tmp}/{name}.db"
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def ask_is(registry: Any, token_id: str, price: float) -> bool:
    """The live book of ``token_id`` shows ``price`` as its best ask."""
    book = registry.get(token_id)
    return book is not None and book.best_ask is not None and abs(book.best_ask - price) < 1e-9


TESTS_DIR = str(Path(__file__).resolve().parent.parent / "tests")


async def bench_lag(url: str, n: int) -> dict[str, float]:
    sys.path[:0] = [TESTS_DIR, str(Path(TESTS_DIR).parent)]  # integration.*, tests.support
    from integration.books_support import running_feed  # type: ignore[import-not-found]
    from integration.support import sim_context  # type: ignore[import-not-found]
    from integration.test_signals import EVERYTHING, make_arbitrage_free, neg_risk_event  # type: ignore[import-not-found]

    from polytape.jobs import run_signal_engine
    from polytape.jobs.base import run_job
    from polytape.jobs.registry import JOBS
    from polytape.sim import SimServer
    from polytape.store.universe import tracked_tokens
    from tests.support.waiting import wait_until  # type: ignore[import-not-found]

    store = Store.open(url)
    lags: list[float] = []
    async with SimServer(seed=7) as sim:
        make_arbitrage_free(sim)
        overrides = {**EVERYTHING, "signal_cooldown_minutes": 0, "signal_book_max_age_seconds": 3600}
        async with sim_context(sim, store, **overrides) as ctx:
            for job in ("sync-gamma-events", "refresh-universe"):
                await run_job(ctx, job, JOBS[job])
            run_signal_engine.attach_live_signals(ctx)
            engine = run_signal_engine.signal_engine(ctx)
            seen: list[float] = []
            engine.listeners.append(lambda rows: seen.append(time.perf_counter()))
            cids = neg_risk_event(sim)
            leg = sim.world.markets[cids[0]].token_ids[0]
            fair = 1 / len(cids)
            tokens = await asyncio.to_thread(tracked_tokens, store)
            async with running_feed(ctx, universe_poll_seconds=0.5):
                await wait_until(lambda: tokens.keys() <= ctx.runtime.books.books.keys(), 30, "every book")
                for k in range(n):
                    close_ask = round(fair + 0.02, 2)
                    sim.world.set_book(leg, [(round(close_ask - 0.04, 2), 50)], [(close_ask, 50)])
                    await wait_until(lambda a=close_ask: ask_is(ctx.runtime.books, leg, a), 10, "close")
                    await engine.wait_idle()
                    seen.clear()
                    open_ask = round(fair - 0.07 - 0.01 * (k % 10), 2)  # sum below 1 by 5-14 points
                    t0 = time.perf_counter()
                    sim.world.set_book(leg, [(round(open_ask - 0.04, 2), 50)], [(open_ask, 50)])
                    await wait_until(lambda: bool(seen), 5, "the arb signal")
                    lags.append(seen[0] - t0)
    store.close()
    return {
        "p50_ms": statistics.median(lags) * 1000,
        "p99_ms": pct(lags, 99) * 1000,
        "max_ms": max(lags) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--lags", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with throwaway_db(args.database_url, tmp, "pass") as url:
            passes = bench_pass(url, args.passes)
        print(
            f"steady pass (200 new trades, {BOOKS_PER_PASS} rewritten books, {N_MARKETS} markets "
            f"with books): p50 {passes['p50_ms']:.0f} ms, p90 {passes['p90_ms']:.0f} ms"
        )
        if args.lags <= 0:
            return
        with throwaway_db(args.database_url, tmp, "lag") as url:
            lag = asyncio.run(bench_lag(url, args.lags))
    print(
        f"book update -> signal_events row ({args.lags} arbs over the WebSocket feed): "
        f"p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms, max {lag['max_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
