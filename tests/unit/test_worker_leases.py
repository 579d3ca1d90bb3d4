"""The worker's token source: shares, hand-over hook, and fencing when leases cannot be renewed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from polytape.config import load_settings
from polytape.runtime import Runtime
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.workers import Handover, register_worker
from polytape.workers import WorkerLeases

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def universe(store: Store, markets: int) -> set[str]:
    tracked = [
        {"condition_id": f"c{i}", "source": "manual", "rank": i, "score": None, "selected_at": NOW}
        for i in range(markets)
    ]
    tokens = [
        {"token_id": f"c{i}-{k}", "condition_id": f"c{i}", "outcome": "Yes", "outcome_index": k}
        for i in range(markets)
        for k in (0, 1)
    ]
    store.upsert(s.tracked_markets, tracked)
    store.upsert(s.market_tokens, tokens)
    return {t["token_id"] for t in tokens}


async def test_two_workers_share_and_the_hook_hears_of_every_hand_over(store: Store) -> None:
    tokens = universe(store, 3)
    clock = [NOW]
    settings = load_settings(database_url=store.url, worker_lease_seconds=10)
    heard: list[tuple[list[Handover], datetime]] = []
    runtime = Runtime(on_handover=lambda hs, until: heard.append((hs, until)))
    a = WorkerLeases(settings, store, "a", lambda: clock[0])
    b = WorkerLeases(settings, store, "b", lambda: clock[0], runtime)
    register_worker(store, "a", NOW)
    assert set((await a()).owned) == tokens and a.current()
    register_worker(store, "b", NOW)
    assert (await b()).owned == {}  # a holds everything until its next round
    clock[0] = NOW + timedelta(seconds=2)
    kept = set((await a()).owned)
    assert len(kept) == 3
    clock[0] = NOW + timedelta(seconds=3)
    view = await b()
    assert set(view.owned) == tokens - kept and view.universe == tokens
    assert view.owned == {t: t.split("-")[0] for t in view.owned}  # token -> condition
    [(handovers, until)] = heard
    assert {h.token_id for h in handovers} == tokens - kept and until == clock[0]
    assert {(h.reason, h.since) for h in handovers} == {("released", NOW + timedelta(seconds=2))}


async def test_a_worker_that_cannot_renew_its_leases_stops_recording_after_the_lease_time(
    store: Store,
) -> None:
    tokens = universe(store, 2)
    settings = load_settings(database_url=store.url, worker_lease_seconds=0.5)
    a = WorkerLeases(settings, store, "a", lambda: datetime.now(UTC))
    register_worker(store, "a", datetime.now(UTC))
    assert set((await a()).owned) == tokens
    store.write(lambda tx: tx.execute(sa.text("DROP TABLE token_leases")))  # every round fails now
    assert set((await a()).owned) == tokens and a.current()  # within the lease time: keep going
    await asyncio.sleep(0.6)
    assert not a.current()
    view = await a()
    assert view.owned == {} and view.universe == tokens  # fenced: record nothing
