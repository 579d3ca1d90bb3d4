"""Universe selection: thresholds, score, cap, manual overrides, change notification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from polytape.jobs import refresh_universe, sync_gamma_events
from polytape.jobs.base import JobContext, JobResult, run_job
from polytape.sim import SimServer
from polytape.sim.model import Market
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.universe import add_manual, list_tracked, remove_manual, tracked_tokens

from .support import sim_context

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def plant_oi(store: Store, values: dict[str, float], ts: datetime = T0) -> None:
    rows = [{"condition_id": cid, "ts": ts, "open_interest": v} for cid, v in values.items()]
    store.upsert(s.market_metrics_ts, rows)


def expected_universe(
    sim: SimServer,
    oi: dict[str, float],
    *,
    cap: int,
    liq: float,
    vol: float,
    min_oi: float,
    manual: list[str],
) -> list[str]:
    """The documented rule, computed from the simulator's truth."""

    def score(m: Market) -> float:
        return m.liquidity + oi.get(m.condition_id, 0.0) + 0.1 * round(m.volume, 6)

    eligible = [
        m
        for m in sim.world.markets.values()
        if not m.closed
        and m.enable_order_book
        and m.condition_id not in manual
        and (m.liquidity >= liq or round(m.volume, 6) >= vol or oi.get(m.condition_id, -1) >= min_oi)
    ]
    eligible.sort(key=lambda m: (-score(m), m.condition_id))
    return manual + [m.condition_id for m in eligible][: max(0, cap - len(manual))]


async def refresh(ctx: JobContext) -> JobResult:
    return await run_job(ctx, "refresh-universe", refresh_universe.run)


def tracked(store: Store) -> list[str]:
    return [r["condition_id"] for r in list_tracked(store)]


def medians(sim: SimServer) -> tuple[float, float]:
    open_markets = [m for m in sim.world.markets.values() if not m.closed]
    liqs = sorted(m.liquidity for m in open_markets)
    vols = sorted(m.volume for m in open_markets)
    return liqs[len(liqs) * 3 // 4], vols[len(vols) * 3 // 4]


async def test_thresholds_each_admit_markets(sim: SimServer, store: Store) -> None:
    liq, vol = medians(sim)
    open_markets = [m for m in sim.world.markets.values() if not m.closed and m.enable_order_book]
    # a low-liquidity, low-volume market that only open interest lets in
    oi_only = next(m for m in open_markets if m.liquidity < liq and m.volume < vol)
    oi = {oi_only.condition_id: 1e6}
    plant_oi(store, {oi_only.condition_id: 1.0}, T0 - timedelta(hours=1))  # older, superseded
    plant_oi(store, oi)
    knobs = {"min_liquidity": liq, "min_volume": vol, "min_oi": 500_000.0, "max_tracked_markets": 200}
    async with sim_context(sim, store, **knobs) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)
        result = await refresh(ctx)
    want = expected_universe(sim, oi, cap=200, liq=liq, vol=vol, min_oi=500_000.0, manual=[])
    assert tracked(store) == want
    assert oi_only.condition_id in want
    by_liq = {m.condition_id for m in open_markets if m.liquidity >= liq}
    by_vol = {m.condition_id for m in open_markets if round(m.volume, 6) >= vol}
    assert by_liq - by_vol and by_vol - by_liq and set(want) == by_liq | by_vol | {oi_only.condition_id}
    no_book = [m.condition_id for m in sim.world.markets.values() if not m.enable_order_book]
    assert no_book and not set(no_book) & set(want)
    rows = list_tracked(store)
    assert [r["rank"] for r in rows] == list(range(1, len(want) + 1))
    assert all(r["source"] == "auto" for r in rows)
    assert result.details["markets"] == len(want) and result.details["tokens"] == 2 * len(want)


async def test_cap_and_manual_overrides(sim: SimServer, store: Store) -> None:
    knobs: dict[str, Any] = {"min_liquidity": 0.0, "min_volume": 0.0, "min_oi": 0.0, "max_tracked_markets": 6}
    no_book = next(m for m in sim.world.markets.values() if not m.enable_order_book)
    closed = next(m for m in sim.world.markets.values() if m.closed)
    async with sim_context(sim, store, **knobs) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)
        await refresh(ctx)
        assert tracked(store) == expected_universe(sim, {}, cap=6, liq=0, vol=0, min_oi=0, manual=[])
        add_manual(store, [no_book.condition_id], now=T0)
        add_manual(store, [closed.condition_id], now=T0 + timedelta(seconds=1))
        await refresh(ctx)
        manual = [no_book.condition_id, closed.condition_id]  # always in, oldest first
        want = expected_universe(sim, {}, cap=6, liq=0, vol=0, min_oi=0, manual=manual)
        assert tracked(store) == want and len(want) == 6
        rows = list_tracked(store)
        assert [(r["source"], r["rank"]) for r in rows[:3]] == [("manual", 1), ("manual", 2), ("auto", 3)]
        # an auto market made manual stays manual through refreshes
        promoted = want[2]
        add_manual(store, [promoted], now=T0 + timedelta(seconds=2))
        await refresh(ctx)
        assert tracked(store)[:3] == [*manual, promoted]
        assert store.count(s.tracked_markets) == 6
        remove_manual(store, manual)
        await refresh(ctx)
        assert tracked(store) == expected_universe(sim, {}, cap=6, liq=0, vol=0, min_oi=0, manual=[promoted])


async def test_auto_rows_are_replaced_when_thresholds_change(sim: SimServer, store: Store) -> None:
    liq, vol = medians(sim)
    async with sim_context(sim, store, min_liquidity=0.0, min_volume=0.0, min_oi=0.0) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)
        await refresh(ctx)
    assert len(tracked(store)) == sum(
        1 for m in sim.world.markets.values() if not m.closed and m.enable_order_book
    )
    async with sim_context(sim, store, min_liquidity=liq, min_volume=vol, min_oi=1e12) as ctx:
        result = await refresh(ctx)
    want = expected_universe(sim, {}, cap=200, liq=liq, vol=vol, min_oi=1e12, manual=[])
    assert tracked(store) == want and result.details["markets_removed"] > 0


async def test_universe_change_is_announced_and_versioned(sim: SimServer, store: Store) -> None:
    calls: list[tuple[set[str], set[str]]] = []
    knobs: dict[str, Any] = {"min_liquidity": 0.0, "min_volume": 0.0, "min_oi": 0.0, "max_tracked_markets": 4}
    async with sim_context(sim, store, **knobs) as ctx:
        ctx.runtime.on_universe_change = lambda added, removed: calls.append((added, removed))
        await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)
        await refresh(ctx)
        first_tokens = set(tracked_tokens(store))
        assert calls == [(first_tokens, set())] and len(first_tokens) == 8
        state = store.get_state("universe")
        assert (state["version"], state["markets"], state["tokens"]) == (1, 4, 8)

        await refresh(ctx)  # nothing changed: no call, same version
        assert len(calls) == 1 and store.get_state("universe")["version"] == 1

        outsider = next(
            m for m in sim.world.markets.values() if not m.closed and m.condition_id not in tracked(store)
        )
        add_manual(store, [outsider.condition_id], now=T0)
        await refresh(ctx)
    added, removed = calls[1]
    assert added == set(outsider.token_ids) and len(removed) == 2 and removed <= first_tokens
    assert set(tracked_tokens(store)) == (first_tokens | added) - removed
    assert store.get_state("universe")["version"] == 2


async def test_ensure_universe_fills_an_empty_store(sim: SimServer, store: Store) -> None:
    async with sim_context(sim, store, min_liquidity=0.0, max_tracked_markets=5) as ctx:
        await refresh_universe.ensure_universe(ctx)
        assert len(tracked(store)) == 5
        await refresh_universe.ensure_universe(ctx)  # not empty: nothing runs
    runs = store.fetch_all(sa.select(s.job_runs.c.job_name).order_by(s.job_runs.c.id))
    assert [r["job_name"] for r in runs] == ["sync-gamma-events", "refresh-universe"]


@pytest.mark.parametrize("over", [0, 2])
async def test_manual_overrides_up_to_the_cap(sim: SimServer, store: Store, over: int) -> None:
    cap = 3
    manual = sorted(m.condition_id for m in sim.world.markets.values() if not m.closed)[: cap + over]
    for i, cid in enumerate(manual):
        add_manual(store, [cid], now=T0 + timedelta(seconds=i))
    async with sim_context(sim, store, min_liquidity=0.0, max_tracked_markets=cap) as ctx:
        await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)
        result = await refresh(ctx)
    assert tracked(store) == manual and result.details["auto"] == 0
    assert result.status == ("partial" if over else "ok")
