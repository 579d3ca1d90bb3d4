"""The signal engine against the simulator with planted situations, on both engines.

Everything reaches the store through the real ingestion: metadata, the universe and the
books through ``sync-gamma-events``, ``refresh-universe``, ``sync-orderbooks`` and the
WebSocket feed; planted trades through ``sync-large-trades``; open interest through
``sync-open-interest``. The simulated world has no random tape (``trades_per_day=0``), so
every trade in the store is one a test planted and every signal is accounted for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from polytape import metrics
from polytape.jobs import run_signal_engine
from polytape.jobs.base import JobContext, run_job
from polytape.jobs.registry import JOBS
from polytape.signals.bookcache import StoredBooks
from polytape.sim import SimServer, World
from polytape.store import Store
from polytape.store import signals as sstore
from polytape.store.alerts import recent as alert_log
from polytape.store.schema import orderbook_levels, orderbooks, signal_events, tracked_markets
from polytape.store.universe import UNIVERSE_MEMBERS_KEY, tracked_tokens
from tests.support.loopback import serve_app
from tests.support.waiting import wait_until

from .books_support import running_feed
from .support import sim_context

EVERYTHING = {"min_liquidity": 0, "min_volume": 0, "min_oi": 0, "max_tracked_markets": 500}


def quiet_world() -> World:
    """Seed 7's universe with no random tape: only planted trades exist."""
    return World(7, history_days=0.01, trades_per_day=0)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    """A started simulator over :func:`quiet_world` (shadows the package's ``sim``)."""
    async with SimServer(quiet_world()) as server:
        yield server


def signals(store: Store, kind: str | None = None) -> list[dict[str, Any]]:
    rows = store.fetch_all(signal_events.select().order_by(signal_events.c.id))
    return [r for r in rows if kind is None or r["signal_type"] == kind]


async def engine_pass(ctx: JobContext) -> int:
    result = await run_job(ctx, "run-signal-engine", JOBS["run-signal-engine"])
    assert result.status == "ok", result.error
    return result.rows_written


def make_arbitrage_free(sim: SimServer) -> None:
    """The generator draws neg-risk prices independently, so its events hold real arbs:
    quote every fully booked one around 1/n so YES asks sum above 1 and bids below."""
    for event in sim.world.events.values():
        ms = [sim.world.markets[c] for c in event.market_ids]
        if event.neg_risk and all(m.book is not None and not m.closed for m in ms):
            fair = 1 / len(ms)
            for m in ms:
                sim.world.set_book(
                    m.token_ids[0], [(round(fair - 0.02, 2), 50)], [(round(fair + 0.02, 2), 50)]
                )


@asynccontextmanager
async def world_context(sim: SimServer, store: Store, **overrides: Any) -> AsyncIterator[JobContext]:
    """An arbitrage-free world: metadata, every market tracked, fresh books from ``sync-orderbooks``."""
    make_arbitrage_free(sim)
    async with sim_context(sim, store, **{**EVERYTHING, **overrides}) as ctx:
        for job in ("sync-gamma-events", "refresh-universe", "sync-orderbooks"):
            assert (await run_job(ctx, job, JOBS[job])).status == "ok"
        yield ctx


async def ingest_trades(ctx: JobContext) -> int:
    """Run ``sync-large-trades`` once; returns the trades it stored."""
    result = await run_job(ctx, "sync-large-trades", JOBS["sync-large-trades"])
    assert result.status == "ok", result.error
    return result.rows_written


async def snapshot_oi(ctx: JobContext, at: datetime) -> None:
    """Run ``sync-open-interest`` as if the clock read ``at`` (its snapshot time)."""
    clock = ctx.clock
    ctx.clock = lambda: at
    try:
        result = await run_job(ctx, "sync-open-interest", JOBS["sync-open-interest"])
    finally:
        ctx.clock = clock
    assert result.status in ("ok", "partial"), result.error  # partial: markets /oi does not know


def written(kind: str) -> float:
    """The ``polytape_signals_written`` counter of one type."""
    value = metrics.REGISTRY.get_sample_value("polytape_signals_written_total", {"signal_type": kind})
    return value or 0.0


def binary_market(sim: SimServer) -> str:
    """A standalone (not neg-risk) market with a book."""
    return next(
        cid
        for cid, m in sim.world.markets.items()
        if m.book is not None and not m.neg_risk_clob and not m.closed
    )


def neg_risk_event(sim: SimServer) -> list[str]:
    """Condition ids of an open neg-risk event whose every market has a book."""
    for event in sim.world.events.values():
        cids = event.market_ids
        ms = [sim.world.markets[c] for c in cids]
        if (
            event.neg_risk
            and len(cids) >= 3
            and not event.closed
            and all(m.book and not m.closed for m in ms)
        ):
            return cids
    raise AssertionError("the simulated world has no fully booked neg-risk event")


def plant_neg_risk_asks(sim: SimServer, cids: list[str], total: float) -> list[float]:
    """YES asks summing to ``total`` (bids 5 ticks below), on every outcome market."""
    n = len(cids)
    asks = [round(total / n, 2)] * (n - 1)
    asks.append(round(total - sum(asks), 2))
    for cid, ask in zip(cids, asks, strict=True):
        yes = sim.world.markets[cid].token_ids[0]
        sim.world.set_book(yes, [(round(ask - 0.05, 2), 500)], [(ask, 100 + 10 * asks.index(ask))])
    return asks


# --- quiet -------------------------------------------------------------------------


async def test_a_quiet_world_yields_no_signal(store: Store) -> None:
    async with SimServer(quiet_world()) as sim, world_context(sim, store) as ctx:
        assert len(await asyncio.to_thread(tracked_tokens, store)) > 20
        assert await ingest_trades(ctx) == 0
        await snapshot_oi(ctx, ctx.clock() - timedelta(minutes=5))
        await snapshot_oi(ctx, ctx.clock())
        assert await engine_pass(ctx) == 0
        assert await engine_pass(ctx) == 0
    assert signals(store) == []


# --- trades ----------------------------------------------------------------------------


async def test_whale_print_and_accumulation(store: Store, sim: SimServer) -> None:
    async with world_context(sim, store) as ctx:
        cid = binary_market(sim)
        whale = sim.world.plant_trade(cid, 0, "BUY", 60_000, 0.5, wallet="0xwhale")
        sim.world.plant_trade(cid, 1, "BUY", 100, 0.5, wallet="0xsmall")  # $50: no news
        now = int(ctx.clock().timestamp())
        acc = [
            sim.world.plant_trade(cid, 1, "SELL", 35_000, 0.5, wallet="0xacc", ts=now - 40 * 60 + i * 600)
            for i in range(3)
        ]
        before = written("large_trade")
        assert await ingest_trades(ctx) == 4  # the $50 print is below the feed's filterAmount
        assert await engine_pass(ctx) == 5  # four large prints and one accumulation
        assert await engine_pass(ctx) == 0  # a rerun adds nothing
        assert await ingest_trades(ctx) == 0  # nor does a second ingestion of the same tape
        assert await engine_pass(ctx) == 0
        assert written("large_trade") - before == 4

    large = signals(store, "large_trade")
    assert sorted(r["payload"]["transaction_hash"] for r in large) == sorted(
        f.transaction_hash for f in [whale, *acc]
    )
    [w] = [r for r in large if r["payload"]["wallet"] == "0xwhale"]
    market = sim.world.markets[cid]
    assert (w["condition_id"], w["token_id"], w["score"]) == (cid, market.token_ids[0], 30_000)
    assert {k: w["payload"][k] for k in ("side", "outcome", "size", "price", "usd_value", "question")} == {
        "side": "BUY",
        "outcome": market.outcomes[0],
        "size": 60_000,
        "price": 0.5,
        "usd_value": 30_000,
        "question": market.question,
    }
    [a] = signals(store, "wallet_accumulation")
    p = a["payload"]
    assert (a["condition_id"], a["token_id"]) == (cid, market.token_ids[1])
    assert (p["wallet"], p["side"], p["trades"], p["total_usd"], p["level"]) == (
        "0xacc",
        "SELL",
        3,
        52_500,
        1,
    )
    assert p["transaction_hashes"] == [f.transaction_hash for f in acc]


# --- books ---------------------------------------------------------------------------------


async def test_neg_risk_arb_then_stale_and_crossed_books(store: Store, sim: SimServer) -> None:
    cids = neg_risk_event(sim)
    async with world_context(sim, store) as ctx:
        assert await engine_pass(ctx) == 0
        asks = plant_neg_risk_asks(sim, cids, 0.90)
        assert (await run_job(ctx, "sync-orderbooks", JOBS["sync-orderbooks"])).status == "ok"
        assert await engine_pass(ctx) == 1
        assert await engine_pass(ctx) == 0
        [sig] = signals(store)
        p = sig["payload"]
        assert sig["signal_type"] == "neg_risk_arb" and sig["condition_id"] is None
        # Listing by any market of the event shows the event's arbitrage; another market's does not.
        since = ctx.clock() - timedelta(hours=1)
        for cid in cids:
            assert [r["id"] for r in sstore.list_signals(store, since, markets=[cid])] == [sig["id"]]
        assert sstore.list_signals(store, since, markets=[binary_market(sim)]) == []
        assert sstore.signals_after_id(store, 0, ["neg_risk_arb"], [cids[-1]])[0]["id"] == sig["id"]
        assert (p["side"], p["edge"], p["price_sum"]) == ("buy", 0.1, 0.9)
        legs = {leg["condition_id"]: leg["price"] for leg in p["legs"]}
        assert legs == dict(zip(cids, asks, strict=True))
        assert p["size_at_best"] == 100 and p["executable_size"] == 100
        assert p["event_id"] == sim.world.markets[cids[0]].event_id

        # The same books a minute later are stale: no evidence, even past the cooldown.
        later = ctx.clock() + timedelta(minutes=31)
        ctx.clock = lambda: later
        assert await engine_pass(ctx) == 0

    # A crossed leg (bid above ask) is never evidence, however wide the "edge".
    store.write(lambda tx: tx.delete(signal_events))
    async with world_context(sim, store) as ctx:
        plant_neg_risk_asks(sim, cids, 0.90)
        yes = sim.world.markets[cids[0]].token_ids[0]
        sim.world.set_book(yes, [(0.40, 10)], [(0.10, 100)])
        assert (await run_job(ctx, "sync-orderbooks", JOBS["sync-orderbooks"])).status == "ok"
        assert await engine_pass(ctx) == 0
    assert signals(store) == []


async def test_complement_arb_from_books_out_of_step(store: Store, sim: SimServer) -> None:
    """The simulator mirrors YES and NO books, as the CLOB does; a NO book stored out of
    step with its YES book (a missed delta) is the situation planted here, in the store."""
    cid = binary_market(sim)
    yes, no = sim.world.markets[cid].token_ids
    sim.world.set_book(yes, [(0.40, 300)], [(0.45, 120)])  # so NO shows 0.55 / 0.60
    async with world_context(sim, store) as ctx:
        now = ctx.clock()
        levels = [
            {"token_id": no, "side": "BUY", "price": 0.30, "size": 50.0, "updated_at": now},
            {"token_id": no, "side": "SELL", "price": 0.50, "size": 80.0, "updated_at": now},
        ]

        def desync(tx: Any) -> None:
            tx.delete(orderbook_levels, orderbook_levels.c.token_id == no)
            tx.upsert(orderbook_levels, levels)
            tx.execute(
                orderbooks.update()
                .where(orderbooks.c.token_id == no)
                .values(best_bid=0.30, best_ask=0.50, updated_at=now)
            )

        store.write(desync)
        assert await engine_pass(ctx) == 1
        assert await engine_pass(ctx) == 0
    [sig] = signals(store)
    p = sig["payload"]
    assert (sig["signal_type"], sig["condition_id"]) == ("complement_arb", cid)
    assert (p["side"], p["yes_price"], p["no_price"], p["edge"]) == ("buy", 0.45, 0.50, 0.05)
    assert (p["size_at_best"], p["executable_size"], p["cost"]) == (80, 80, pytest.approx(76.0))


async def test_price_move_from_the_books(store: Store, sim: SimServer) -> None:
    cid = binary_market(sim)
    yes = sim.world.markets[cid].token_ids[0]
    sim.world.set_book(yes, [(0.38, 100)], [(0.42, 100)])
    async with world_context(sim, store) as ctx:
        assert await engine_pass(ctx) == 0  # the first mid is remembered
        sim.world.set_book(yes, [(0.53, 100)], [(0.57, 100)])
        assert (await run_job(ctx, "sync-orderbooks", JOBS["sync-orderbooks"])).status == "ok"
        assert await engine_pass(ctx) == 1
        assert await engine_pass(ctx) == 0
    [sig] = signals(store)
    p = sig["payload"]
    assert (sig["signal_type"], sig["condition_id"]) == ("price_move", cid)
    assert (p["basis"], p["direction"], p["from_price"], p["to_price"], p["move"]) == (
        "mid",
        "up",
        0.4,
        0.55,
        0.15,
    )


async def test_open_interest_jump(store: Store, sim: SimServer) -> None:
    cid = binary_market(sim)
    sim.world.set_open_interest(cid, 200_000.0)
    async with world_context(sim, store) as ctx:
        now = ctx.clock()
        await snapshot_oi(ctx, now - timedelta(minutes=5))
        assert await engine_pass(ctx) == 0
        sim.world.set_open_interest(cid, 290_000.0)
        await snapshot_oi(ctx, now)
        assert await engine_pass(ctx) == 1
        assert await engine_pass(ctx) == 0
        await snapshot_oi(ctx, now)  # the same snapshot again: an upsert, not a new pair
        assert await engine_pass(ctx) == 0
    [sig] = signals(store)
    p = sig["payload"]
    assert (sig["signal_type"], sig["condition_id"], sig["score"]) == ("oi_change", cid, 90_000)
    assert (p["previous_oi"], p["open_interest"], p["change_pct"]) == (200_000, 290_000, 45.0)


# --- live -------------------------------------------------------------------------------


async def test_live_book_update_records_the_arb(store: Store, sim: SimServer) -> None:
    cids = neg_risk_event(sim)
    async with world_context(sim, store, ws_assets_per_connection=100) as ctx:
        run_signal_engine.attach_live_signals(ctx)
        tokens = await asyncio.to_thread(tracked_tokens, store)
        async with running_feed(ctx, universe_poll_seconds=0.5):
            await wait_until(lambda: tokens.keys() <= ctx.runtime.books.books.keys(), 15, "every book")
            assert signals(store) == []
            plant_neg_risk_asks(sim, cids, 0.93)
            # No periodic pass runs here: only the feed's book change can write this row.
            await wait_until(lambda: len(signals(store)) == 1, 5, "the live arb signal")
            engine = ctx.runtime.signal_engine
            await engine.wait_idle()
    [sig] = signals(store)
    assert (sig["signal_type"], sig["payload"]["price_sum"]) == ("neg_risk_arb", 0.93)


async def test_a_market_joining_the_universe_is_judged_on_its_first_snapshot(
    store: Store, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15 item 5: the engine's cached market list must not hide a market that just
    joined the universe. The retry window is stretched so the old behaviour (judge the
    first snapshot with the cached list, which lacks the market) would always show."""
    from polytape.signals import engine as engine_mod

    monkeypatch.setattr(engine_mod, "STRUCTURE_RETRY_SECONDS", 600.0)
    cids = neg_risk_event(sim)
    async with world_context(sim, store, ws_assets_per_connection=100) as ctx:
        joining = {t for c in cids for t in sim.world.markets[c].token_ids}

        def before_they_joined(tx: Any) -> None:  # the universe as a refresh published it without them
            tx.delete(tracked_markets, tracked_markets.c.condition_id.in_(cids))
            members = tx.get_state(UNIVERSE_MEMBERS_KEY)
            members = {
                "condition_ids": [c for c in members["condition_ids"] if c not in cids],
                "token_ids": [t for t in members["token_ids"] if t not in joining],
            }
            tx.set_state(UNIVERSE_MEMBERS_KEY, members, ctx.clock())

        store.write(before_they_joined)
        run_signal_engine.attach_live_signals(ctx)
        tokens = await asyncio.to_thread(tracked_tokens, store)
        async with running_feed(ctx, universe_poll_seconds=0.5):
            registry = ctx.runtime.books
            await wait_until(lambda: tokens.keys() <= registry.books.keys(), 15, "every book")
            engine = ctx.runtime.signal_engine
            await wait_until(lambda: engine._structure is not None, 5, "the engine to cache its market list")
            plant_neg_risk_asks(sim, cids, 0.93)  # standing asks before the markets join
            assert signals(store) == []
            assert (await run_job(ctx, "refresh-universe", JOBS["refresh-universe"])).status == "ok"
            # No periodic pass runs here: only the new markets' first snapshots can write this.
            await wait_until(lambda: len(signals(store)) == 1, 10, "the arb of the markets that joined")
            await engine.wait_idle()
    [sig] = signals(store)
    assert (sig["signal_type"], sig["payload"]["price_sum"]) == ("neg_risk_arb", 0.93)


async def test_a_quiet_live_book_the_feed_keeps_current_is_evidence(store: Store, sim: SimServer) -> None:
    """Legs nobody touches for longer than the freshness limit still count while the
    connection carrying them keeps delivering; without the feed's word they are stale."""
    cids = neg_risk_event(sim)
    legs = [sim.world.markets[c].token_ids[0] for c in cids]
    other = sim.world.markets[binary_market(sim)].token_ids[0]
    overrides = {"ws_assets_per_connection": 500, "signal_book_max_age_seconds": 1.0}
    async with world_context(sim, store, **overrides) as ctx:
        tokens = await asyncio.to_thread(tracked_tokens, store)
        async with running_feed(ctx, universe_poll_seconds=0.5):
            registry = ctx.runtime.books
            await wait_until(lambda: tokens.keys() <= registry.books.keys(), 15, "every book")
            asks = plant_neg_risk_asks(sim, cids, 0.93)
            shown = lambda: [registry.get(t).best_ask for t in legs] == asks  # noqa: E731
            await wait_until(shown, 5, "the planted asks on the live books")

            def newest_receipt() -> datetime:
                return max(registry.get(t).received_at for t in legs)

            async def chatter() -> None:  # another book keeps the connection talking
                k = 0
                while True:
                    k += 1
                    sim.world.set_book(other, [(0.40, 10 + k % 2)], [(0.60, 10)])
                    await asyncio.sleep(0.05)

            task = asyncio.create_task(chatter())
            try:
                aged = lambda: (ctx.clock() - newest_receipt()).total_seconds() > 1.5  # noqa: E731
                await wait_until(aged, 5, "the legs to age past the freshness limit")
                blind = run_signal_engine.SignalEngine(store, ctx.settings, registry=registry)
                assert (await blind.run_pass()).written == []  # no feed: the quiet legs are stale
                started = ctx.clock()
                assert await engine_pass(ctx) == 1
            finally:
                task.cancel()
            # Every leg was older than the limit when the pass ran: only the feed's word made it count.
            assert (started - newest_receipt()).total_seconds() > 1.0
    [sig] = signals(store)
    assert (sig["signal_type"], sig["payload"]["price_sum"]) == ("neg_risk_arb", 0.93)


# --- webhook -------------------------------------------------------------------------------


@asynccontextmanager
async def webhook_server(fail_first: int) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook answering 503 ``fail_first`` times, then Slack's plain ``ok``."""
    received: list[dict[str, Any]] = []
    calls = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] <= fail_first:
            return web.Response(status=503, text="busy")
        received.append(json.loads(await request.text()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/T1/B2", hook)
    async with serve_app(app) as base_url:
        yield f"{base_url}/services/T1/B2", received


async def test_each_new_signal_reaches_the_old_webhook_setting_through_apprise(
    store: Store, sim: SimServer
) -> None:
    overrides = {"signal_webhook_url": "", "alert_retry_base_seconds": 0.01}
    async with webhook_server(fail_first=2) as (url, received):
        overrides["signal_webhook_url"] = url
        async with world_context(sim, store, **overrides) as ctx:
            cid = binary_market(sim)
            sim.world.plant_trade(cid, 0, "BUY", 40_000, 0.5, wallet="0xwhale")
            sent = metrics.REGISTRY.get_sample_value("polytape_alert_deliveries_total", {"outcome": "sent"})
            assert await ingest_trades(ctx) == 1
            assert await engine_pass(ctx) == 1  # the job waits for the delivery (drain)
            assert await engine_pass(ctx) == 0
        after = metrics.REGISTRY.get_sample_value("polytape_alert_deliveries_total", {"outcome": "sent"})
    assert (after or 0.0) - (sent or 0.0) == 1
    [body] = received  # Apprise's JSON: title, message, type
    assert body["title"] == "polytape: large_trade"
    assert body["message"].startswith("large_trade:") and "$20,000" in body["message"]
    [delivery] = alert_log(store)
    assert (delivery["status"], delivery["attempts"], delivery["market"]) == ("sent", 3, cid)


async def test_alerts_deliver_only_news(store: Store, sim: SimServer) -> None:
    """Issue 12 item 16: on a fresh database, signals older than the alert horizon are
    stored but not delivered; a fresh one is delivered."""
    async with (
        webhook_server(fail_first=0) as (url, received),
        world_context(sim, store, signal_webhook_url=url, alert_horizon_minutes=15) as ctx,
    ):
        cid = binary_market(sim)
        old_ts = int(time.time()) - 40 * 60  # inside the engine's 1 h trade horizon, past the alert one
        sim.world.plant_trade(cid, 0, "BUY", 40_000, 0.5, wallet="0xold", ts=old_ts)
        fresh = sim.world.plant_trade(cid, 0, "BUY", 30_000, 0.5, wallet="0xnew")
        assert await ingest_trades(ctx) == 2
        assert await engine_pass(ctx) == 2  # both are stored as signals
        sink = ctx.runtime.signal_sink
        assert sink is not None
        assert await sink.drain(10)
    [body] = received
    assert "0xnew" in body["message"] and "0xold" not in body["message"]
    log = {r["signal_id"]: r["status"] for r in alert_log(store)}
    by_wallet = {s["payload"]["wallet"]: s["id"] for s in signals(store, "large_trade")}
    assert (log[by_wallet["0xnew"]], log[by_wallet["0xold"]]) == ("sent", "stale")
    assert fresh.transaction_hash


# --- the CLI -------------------------------------------------------------------------------


async def test_signals_list_and_tail_show_what_was_written(store: Store, sim: SimServer) -> None:
    from rich.console import Console

    from polytape import cli as signals_cli

    async with world_context(sim, store) as ctx:
        cid = binary_market(sim)
        sim.world.plant_trade(cid, 0, "BUY", 50_000, 0.5, wallet="0xwhale")
        assert await ingest_trades(ctx) == 1
        assert await engine_pass(ctx) == 1
        settings = ctx.settings
    console = Console(record=True, width=250)
    code = await asyncio.to_thread(
        signals_cli.show_signals, settings, console, since="1h", types=["large_trade"], markets=[cid]
    )
    text = console.export_text()
    assert code == 0 and "large_trade" in text and "$25,000" in text and "1 signal(s)" in text
    empty = Console(record=True, width=250)
    await asyncio.to_thread(
        signals_cli.show_signals, settings, empty, since="1h", types=["oi_change"], markets=[]
    )
    assert "0 signal(s)" in empty.export_text()
    assert (
        signals_cli.show_signals(settings, Console(record=True), since="1h", types=["nope"], markets=[]) == 2
    )

    # tail starts at the newest id, then prints what is written after it.
    polls = {"n": 0}

    def stop() -> bool:
        polls["n"] += 1
        if polls["n"] == 2:  # after the first (empty) poll, a new signal arrives
            sim.world.plant_trade(cid, 1, "SELL", 40_000, 0.5, wallet="0xtail")
            asyncio.run_coroutine_threadsafe(ingest_trades(ctx), loop).result()
            asyncio.run_coroutine_threadsafe(engine_pass(ctx), loop).result()
        return polls["n"] > 3

    loop = asyncio.get_running_loop()
    tail_console = Console(record=True, width=250)
    async with sim_context(sim, store, **EVERYTHING) as ctx:
        code = await asyncio.to_thread(
            signals_cli.follow_signals,
            settings,
            tail_console,
            types=[],
            markets=[],
            poll_seconds=0.01,
            stop=stop,
        )
    out = tail_console.export_text()
    assert code == 0 and "0xtail" in out and "0xwhale" not in out


# --- reading only what changed ------------------------------------------------------------


def test_stored_books_are_read_incrementally(store: Store) -> None:
    """Each refresh reports only books rewritten since the last (a late writer inside the
    overlap included) and forgets books past the freshness limit."""
    now = datetime.now(UTC)

    def book(token_id: str, at: datetime, bid: float = 0.4) -> dict[str, Any]:
        row = {"token_id": token_id, "condition_id": "0xc" + token_id, "best_bid": bid, "best_ask": 0.6}
        return {**row, "source": "ws", "updated_at": at}

    def put(*rows: dict[str, Any]) -> None:
        store.upsert(orderbooks, list(rows), update=["best_bid", "best_ask", "updated_at"])

    put(
        book("a", now - timedelta(seconds=5)),
        book("b", now - timedelta(seconds=2)),
        book("old", now - timedelta(seconds=40)),
    )
    cache = StoredBooks(max_age_seconds=30, overlap_seconds=10)
    refresh = lambda at: store.read(lambda conn: cache.refresh(conn, at))  # noqa: E731
    assert refresh(now) == {"a", "b"}  # "old" is past the limit: never evidence, never read
    assert refresh(now) == set()  # nothing rewritten
    put(book("a", now + timedelta(seconds=1), bid=0.45))
    put(book("c", now - timedelta(seconds=4)))  # committed late, stamped before the newest seen
    assert refresh(now + timedelta(seconds=2)) == {"a", "c"}
    assert cache.views["a"].best_bid == 0.45
    assert sorted(cache.views) == ["a", "b", "c"]
    assert refresh(now + timedelta(seconds=29)) == set()
    assert sorted(cache.views) == ["a"]  # b and c aged out
