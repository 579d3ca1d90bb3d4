"""Benchmark: Gamma normalization and a full sync of ~5,000 markets, against a naive baseline.

Run: ``.venv/bin/python benchmarks/bench_gamma.py [--markets 5000]``. Prints:

1. normalization, markets/s: polytape (msgspec decode of the page body +
   ``normalize_events_page``) vs a naive version (``json.loads`` + plain dict handling);
2. a full sync from the simulator (real sockets on 127.0.0.1) into a fresh SQLite file:
   the network alone (fetch every page, store nothing), polytape's ``sync_gamma_events``
   job, and the naive baseline (httpx + json + row-at-a-time INSERTs, one commit per page).

Timings are wall clock on this machine; run it twice and read the second run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa

from polytape.app import job_context
from polytape.config import load_settings
from polytape.jobs import sync_gamma_events
from polytape.jobs.base import run_job
from polytape.normalize.gamma import normalize_events_page
from polytape.sim import SimServer, World, payloads
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.metadata import write_events_page

PAGE = 500  # the keyset maximum


def build_world(n_markets: int) -> World:
    """A world with about ``n_markets`` open markets (about 2 markets per event).

    The simulator draws Gamma market ids at random; at this size some collide, so they
    are renumbered here (the real ids are unique).
    """
    world = World(
        seed=11,
        n_events=max(1, int(n_markets / 2.06)),
        n_closed_events=0,
        history_days=0.01,
        trades_per_day=10,
    )
    for i, market in enumerate(world.markets.values()):
        market.gamma_id = str(2_000_000 + i)
    return world


def page_bodies(world: World) -> list[bytes]:
    """The events as the wire serves them, in pages of ``PAGE``."""
    tags = {t.id: t for t in world.tags}
    events = [
        payloads.gamma_event(e, [world.markets[c] for c in e.market_ids], tags) for e in world.events.values()
    ]
    return [json.dumps(events[i : i + PAGE]).encode() for i in range(0, len(events), PAGE)]


# ---- the naive baseline ------------------------------------------------------------------------


def naive_date(value: Any) -> datetime | None:
    if not value:
        return None
    text = value.replace("Z", "+00:00").replace(" ", "T")
    if text.endswith("+00"):
        text += ":00"
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def naive_normalize(events: list[dict[str, Any]], now: datetime) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"events": [], "markets": [], "tokens": []}
    for e in events:
        out["events"].append(
            {
                "event_id": str(e["id"]),
                "slug": e.get("slug"),
                "title": e.get("title"),
                "active": e.get("active"),
                "closed": e.get("closed"),
                "neg_risk": e.get("negRisk"),
                "neg_risk_market_id": e.get("negRiskMarketID"),
                "start_date": naive_date(e.get("startDate")),
                "end_date": naive_date(e.get("endDate")),
                "volume": float(e["volume"]) if e.get("volume") is not None else None,
                "liquidity": float(e["liquidity"]) if e.get("liquidity") is not None else None,
                "first_seen_at": now,
                "updated_at": now,
            }
        )
        for m in e.get("markets") or []:
            outcomes = json.loads(m["outcomes"])
            prices = [float(p) for p in json.loads(m["outcomePrices"])] if m.get("outcomePrices") else None
            tokens = m.get("clobTokenIds") or []
            tokens = json.loads(tokens) if isinstance(tokens, str) else tokens
            volume = m.get("volumeNum", m.get("volume"))
            liquidity = m.get("liquidityNum", m.get("liquidity"))
            out["markets"].append(
                {
                    "condition_id": m["conditionId"],
                    "gamma_market_id": str(m["id"]),
                    "event_id": str(e["id"]),
                    "question": m.get("question"),
                    "slug": m.get("slug"),
                    "outcomes": outcomes,
                    "outcome_prices": prices,
                    "clob_token_ids": tokens,
                    "gamma_volume": float(volume) if volume is not None else None,
                    "gamma_liquidity": float(liquidity) if liquidity is not None else None,
                    "neg_risk": m.get("negRisk"),
                    "neg_risk_source": "gamma" if m.get("negRisk") is not None else None,
                    "active": bool(m.get("active")) and not m.get("closed"),
                    "closed": m.get("closed"),
                    "end_date": naive_date(m.get("endDate")),
                    "first_seen_at": now,
                    "updated_at": now,
                }
            )
            for i, tid in enumerate(tokens):
                out["tokens"].append(
                    {
                        "token_id": tid,
                        "condition_id": m["conditionId"],
                        "outcome": outcomes[i],
                        "outcome_index": i,
                    }
                )
    return out


def naive_store(engine: sa.Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    """One INSERT … ON CONFLICT per row, one commit per page."""
    from sqlalchemy.dialects.sqlite import insert

    with engine.begin() as conn:
        for table, key in (
            (s.events, "event_id"),
            (s.markets, "condition_id"),
            (s.market_tokens, "token_id"),
        ):
            for row in rows[table.name if table.name != "market_tokens" else "tokens"]:
                stmt = insert(table).values(**row)
                update = {k: stmt.excluded[k] for k in row if k not in (key, "first_seen_at")}
                conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=update))


# ---- measurements -------------------------------------------------------------------------------


def _rate(fn: Callable[[], object], n: int, repeat: int = 5) -> float:
    """Markets/s of ``fn``, best of ``repeat``, with the cyclic GC off while timing (as ``timeit``).

    The benchmark's inputs are tens of MB of live dicts; a full GC pass over them lands at
    random in one timing or another and measures the benchmark, not the code.
    """
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return n / min(times)


def bench_normalize(bodies: list[bytes], n: int) -> dict[str, float]:
    """Markets/s: normalization of decoded pages, and decode + normalize from the body."""
    now = datetime.now(UTC)
    decoded = [msgspec.json.decode(b) for b in bodies]
    loaded = [json.loads(b) for b in bodies]
    return {
        "polytape normalize": _rate(lambda: [normalize_events_page(p, now) for p in decoded], n),
        "naive normalize": _rate(lambda: [naive_normalize(p, now) for p in loaded], n),
        "polytape decode+normalize": _rate(
            lambda: [normalize_events_page(msgspec.json.decode(b), now) for b in bodies], n
        ),
        "naive decode+normalize": _rate(lambda: [naive_normalize(json.loads(b), now) for b in bodies], n),
    }


async def fetch_only(sim: SimServer) -> float:
    async with httpx.AsyncClient() as client:
        t0 = time.perf_counter()
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"active": "true", "closed": "false", "limit": PAGE}
            if cursor:
                params["after_cursor"] = cursor
            body = (await client.get(f"{sim.gamma_url}/events/keyset", params=params)).content
            cursor = msgspec.json.decode(body).get("next_cursor")
            if not cursor:
                return time.perf_counter() - t0


async def polytape_sync(sim: SimServer, db: Path) -> tuple[float, int]:
    settings = load_settings(database_url=f"sqlite:///{db}", gamma_url=sim.gamma_url, gamma_page_size=PAGE)
    store = Store.open(settings.database_url, batch_size=settings.db_batch_size)
    async with job_context(settings, store) as ctx:
        t0 = time.perf_counter()
        result = await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)
        elapsed = time.perf_counter() - t0
    count = store.count(s.markets)
    store.close()
    assert result.status == "ok", result
    return elapsed, count


def store_only(bodies: list[bytes], db: Path) -> float:
    """polytape's own work for the whole sync: normalize and write every page, no network."""
    store = Store.open(f"sqlite:///{db}")
    pages = [msgspec.json.decode(b) for b in bodies]
    t0 = time.perf_counter()
    for events in pages:
        now = datetime.now(UTC)
        page = normalize_events_page(events, now)
        store.write(lambda tx, page=page, now=now: write_events_page(tx, page, now))
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


async def naive_sync(sim: SimServer, db: Path) -> tuple[float, int]:
    store = Store.open(f"sqlite:///{db}")
    engine = store.engine
    async with httpx.AsyncClient() as client:
        t0 = time.perf_counter()
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"active": "true", "closed": "false", "limit": PAGE}
            if cursor:
                params["after_cursor"] = cursor
            page = json.loads((await client.get(f"{sim.gamma_url}/events/keyset", params=params)).content)
            rows = naive_normalize(page["events"], datetime.now(UTC))
            await asyncio.to_thread(naive_store, engine, rows)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        elapsed = time.perf_counter() - t0
    count = store.count(s.markets)
    store.close()
    return elapsed, count


async def main(n_markets: int) -> None:
    world = build_world(n_markets)
    n = len(world.markets)
    bodies = page_bodies(world)
    size = sum(map(len, bodies)) / 1e6
    print(f"world: {len(world.events)} events, {n} markets, {2 * n} tokens, {size:.1f} MB of JSON")
    for label, rate in bench_normalize(bodies, n).items():
        print(f"{label:<28}: {rate:>10,.0f} markets/s")
    async with SimServer(world=world) as sim:
        with tempfile.TemporaryDirectory() as tmp:
            net = min([await fetch_only(sim) for _ in range(3)])
            ours, stored_ours = await polytape_sync(sim, Path(tmp) / "polytape.db")
            naive, stored_naive = await naive_sync(sim, Path(tmp) / "naive.db")
            own = store_only(bodies, Path(tmp) / "own.db")
    print(f"full sync  network only (fetch every page)         : {net:6.2f} s")
    print(f"full sync  polytape sync_gamma_events → SQLite     : {ours:6.2f} s ({stored_ours} markets)")
    print(f"full sync  naive, row-at-a-time INSERTs → SQLite    : {naive:6.2f} s ({stored_naive} markets)")
    print(f"full sync  polytape work alone (normalize + store, no network): {own:6.2f} s")
    print(f"polytape beyond the network: {ours - net:5.2f} s; naive beyond the network: {naive - net:5.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=5000)
    asyncio.run(main(parser.parse_args().markets))
