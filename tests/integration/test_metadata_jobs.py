"""sync_gamma_events and sync_tag_metadata against the simulator, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from polytape.jobs import sync_gamma_events, sync_tag_metadata
from polytape.jobs.base import JobContext, JobResult, run_job
from polytape.sim import SimServer, payloads
from polytape.store import Store
from polytape.store import schema as s
from polytape.store.metadata import set_clob_neg_risk

from .gamma_truth import stored, truth
from .support import sim_context


async def sync(ctx: JobContext) -> JobResult:
    return await run_job(ctx, "sync-gamma-events", sync_gamma_events.run)


def first_seen(store: Store) -> dict[str, Any]:
    rows = store.fetch_all(sa.select(s.markets.c.condition_id, s.markets.c.first_seen_at))
    return {r["condition_id"]: r["first_seen_at"] for r in rows}


@pytest.mark.parametrize("paging", ["keyset", "offset"])
async def test_full_sync_stores_exactly_what_is_served(sim: SimServer, store: Store, paging: str) -> None:
    expected = truth(sim.world)
    assert any(m["neg_risk"] is None for m in expected["markets"])  # the quirks are in play
    assert any(not m["enable_order_book"] for m in expected["markets"])
    async with sim_context(sim, store, gamma_paging=paging, gamma_page_size=7) as ctx:
        result = await sync(ctx)
        assert result.status == "ok", result
        assert stored(store) == expected
        assert result.details["new_events"] == len(expected["events"])
        assert result.details["new_markets"] == len(expected["markets"])
        assert result.details["pages"] >= len(expected["events"]) // 7
        path = "/events/keyset" if paging == "keyset" else "/events"
        assert sim.count("gamma", path) == result.details["pages"]
        seen_at = first_seen(store)

        again = await sync(ctx)  # a rerun changes nothing
        assert again.status == "ok"
        assert (again.details["new_events"], again.details["new_markets"]) == (0, 0)
        assert stored(store) == expected
        assert first_seen(store) == seen_at
    runs = store.fetch_all(sa.select(s.job_runs).order_by(s.job_runs.c.id))
    assert [r["details"]["new_markets"] for r in runs] == [len(expected["markets"]), 0]


async def test_newly_discovered_events_and_markets_are_counted(sim: SimServer, store: Store) -> None:
    async with sim_context(sim, store) as ctx:
        await sync(ctx)
        event = next(e for e in sim.world.events.values() if len(e.market_ids) > 1 and not e.closed)
        store.write(lambda tx: tx.delete(s.events, s.events.c.event_id == event.id))
        store.write(lambda tx: tx.delete(s.markets, s.markets.c.event_id == event.id))
        result = await sync(ctx)
    assert (result.details["new_events"], result.details["new_markets"]) == (1, len(event.market_ids))
    assert stored(store) == truth(sim.world)


async def test_clob_neg_risk_survives_gamma_syncs(sim: SimServer, store: Store) -> None:
    mismatch = next(m for m in sim.world.markets.values() if "gamma_negrisk_mismatch" in m.quirks)
    assert (mismatch.neg_risk_gamma, mismatch.neg_risk_clob) == (False, True)
    async with sim_context(sim, store) as ctx:
        await sync(ctx)
        assert store.write(lambda tx: set_clob_neg_risk(tx, {mismatch.condition_id: True})) == 1
        await sync(ctx)
    rows = {r["condition_id"]: r for r in store.fetch_all(sa.select(s.markets))}
    assert (rows[mismatch.condition_id]["neg_risk"], rows[mismatch.condition_id]["neg_risk_source"]) == (
        True,
        "clob",
    )
    others = [r for cid, r in rows.items() if cid != mismatch.condition_id]
    assert all(r["neg_risk_source"] in ("gamma", None) for r in others)
    assert store.write(lambda tx: set_clob_neg_risk(tx, {"0xunknown": True})) == 0


@pytest.mark.parametrize(("kind", "count"), [("503", 2), ("429", 1), ("reset", 1), ("html1015", 1)])
async def test_transient_faults_mid_sync_lose_nothing(
    sim: SimServer, store: Store, kind: str, count: int
) -> None:
    sim.inject(host="gamma", path="/events/keyset", kind=kind, count=count, retry_after=0.2, after=2)
    async with sim_context(sim, store, gamma_page_size=5) as ctx:
        result = await sync(ctx)
    assert result.status == "ok", result
    assert [k for _, _, k in sim.faults.served] == [kind] * count
    assert stored(store) == truth(sim.world)


async def test_429_honours_retry_after(sim: SimServer, store: Store) -> None:
    sim.inject(host="gamma", path="/events/keyset", kind="429", retry_after=0.5, after=1)
    async with sim_context(sim, store, gamma_page_size=5) as ctx:
        await sync(ctx)
    log = [r for r in sim.request_log if r.path == "/events/keyset"]
    i = next(i for i, r in enumerate(log) if r.status == 429)
    assert log[i + 1].at - log[i].at >= 0.45  # the retry waited for Retry-After
    assert stored(store) == truth(sim.world)


async def test_page_failing_after_retries_ends_partial_and_keeps_earlier_pages(
    sim: SimServer, store: Store
) -> None:
    sim.inject(host="gamma", path="/events/keyset", kind="503", count=10, after=2)
    async with sim_context(sim, store, gamma_page_size=5, http_max_retries=1) as ctx:
        result = await sync(ctx)
    assert result.status == "partial" and "page 3" in result.details["problems"][0]
    first_ten = sorted((e for e in sim.world.events.values() if not e.closed), key=lambda e: int(e.id))[:10]
    expected = truth(sim.world, skip_events=frozenset(set(sim.world.events) - {e.id for e in first_ten}))
    assert stored(store) == expected
    runs = store.fetch_all(sa.select(s.job_runs))
    assert runs[0]["status"] == "partial" and runs[0]["details"]["pages"] == 2


async def test_malformed_items_are_rejected_and_the_rest_land(
    sim: SimServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_events = sorted((e for e in sim.world.events.values() if not e.closed), key=lambda e: int(e.id))
    bad_event, bad_market_event = open_events[3].id, next(e for e in open_events if len(e.market_ids) > 1)
    bad_cid = bad_market_event.market_ids[0]
    original = payloads.gamma_event

    def mangled(event: Any, markets: Any, tags: Any) -> dict[str, Any]:
        out = original(event, markets, tags)
        if event.id == bad_event:
            out["volume"] = "lots"
        if event.id == bad_market_event.id:
            out["markets"][0]["outcomes"] = '["Yes", "No"'
        return out

    monkeypatch.setattr(payloads, "gamma_event", mangled)
    async with sim_context(sim, store, gamma_page_size=5) as ctx:
        result = await sync(ctx)
    assert result.status == "ok" and result.details["rejected"] == 2
    expected = truth(sim.world, skip_events=frozenset({bad_event}))
    expected["markets"] = [m for m in expected["markets"] if m["condition_id"] != bad_cid]
    expected["market_tokens"] = [t for t in expected["market_tokens"] if t["condition_id"] != bad_cid]
    expected["market_tags"] = [t for t in expected["market_tags"] if t[0] != bad_cid]
    assert stored(store) == expected
    rejected = store.fetch_all(sa.select(s.rejected_payloads).order_by(s.rejected_payloads.c.id))
    market_reason = f'market of event {bad_market_event.id}: outcomes is not valid JSON: \'["Yes", "No"\''
    assert {(r["source"], r["reason"]) for r in rejected} == {
        ("gamma:event", "event: volume is not a number: 'lots'"),
        ("gamma:market", market_reason),
    }
    assert bad_cid in (rejected[0]["raw"] + rejected[1]["raw"])


async def test_tag_metadata_marks_sports(sim: SimServer, store: Store) -> None:
    async with sim_context(sim, store) as ctx:
        result = await run_job(ctx, "sync-tag-metadata", sync_tag_metadata.run)
        await sync(ctx)  # tags seen on events must not reset is_sport
        again = await run_job(ctx, "sync-tag-metadata", sync_tag_metadata.run)
    assert result.status == again.status == "ok"
    sport_ids = {p.strip() for sp in sim.world.sports for p in sp.tags.split(",") if p.strip()}
    assert "745" in sport_ids and "306" in sport_ids  # "1,745, 100639," and an id /tags lacks
    rows = {r["tag_id"]: r for r in store.fetch_all(sa.select(s.tags))}
    served = {t.id: t for t in sim.world.tags}
    assert set(rows) == set(served) | sport_ids
    for tag_id, row in rows.items():
        assert row["is_sport"] is (tag_id in sport_ids)
        if tag_id in served:
            assert (row["label"], row["slug"]) == (served[tag_id].label, served[tag_id].slug)
        else:
            assert row["label"] is None
    assert result.details["sport_tags"] == len(sport_ids)


async def test_tag_metadata_keeps_is_sport_when_sports_fails(sim: SimServer, store: Store) -> None:
    async with sim_context(sim, store, http_max_retries=0) as ctx:
        await run_job(ctx, "sync-tag-metadata", sync_tag_metadata.run)
        sim.inject(host="gamma", path="/sports", kind="500")
        result = await run_job(ctx, "sync-tag-metadata", sync_tag_metadata.run)
    assert result.status == "partial" and "/sports" in result.details["problems"][0]
    sport_ids = {p.strip() for sp in sim.world.sports for p in sp.tags.split(",") if p.strip()}
    assert store.count(s.tags, s.tags.c.is_sport.is_(True)) == len(sport_ids)


async def test_a_market_reusing_a_gamma_id_is_rejected_alone(sim: SimServer, store: Store) -> None:
    open_markets = sorted(
        (m for m in sim.world.markets.values() if not m.closed),
        key=lambda m: int(sim.world.events[m.event_id].id),
    )
    first, clash = open_markets[0], open_markets[-1]
    clash.gamma_id = first.gamma_id  # served on different pages: the later one must not sink its page
    async with sim_context(sim, store, gamma_page_size=5) as ctx:
        result = await sync(ctx)
    assert result.status == "ok" and result.details["rejected"] == 1
    expected = truth(sim.world)
    expected["markets"] = [m for m in expected["markets"] if m["condition_id"] != clash.condition_id]
    expected["market_tokens"] = [
        t for t in expected["market_tokens"] if t["condition_id"] != clash.condition_id
    ]
    expected["market_tags"] = [t for t in expected["market_tags"] if t[0] != clash.condition_id]
    assert stored(store) == expected
    (row,) = store.fetch_all(sa.select(s.rejected_payloads))
    assert f"gamma id {first.gamma_id} already belongs to {first.condition_id}" in row["reason"]
