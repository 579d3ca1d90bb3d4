"""The dashboard's JSON API over a real socket, on both engines, against data the real jobs
ingested from the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from polytape.config import Settings
from polytape.jobs.base import run_job
from polytape.jobs.registry import JOBS
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store import signals as sstore
from polytape.web import WebServer, create_app

from .books_support import truth_levels
from .support import sim_context
from .test_signals import EVERYTHING

XSS = '<img src=x onerror="alert(1)"> & <script>alert(2)</script>'


@asynccontextmanager
async def served(store: Store, **settings: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    settings.setdefault("archive_dir", Path("/nonexistent/polytape-archive"))
    server = WebServer(store, Settings(web_port=0, **settings))
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield http, url
    finally:
        await server.aclose()


async def get(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def ingest(sim: SimServer, store: Store) -> None:
    async with sim_context(sim, store, **EVERYTHING) as ctx:
        for job in ("sync-gamma-events", "refresh-universe", "sync-orderbooks", "sync-large-trades"):
            assert (await run_job(ctx, job, JOBS[job])).status in ("ok", "partial")
        for job in ("sync-open-interest",):
            assert (await run_job(ctx, job, JOBS[job])).status in ("ok", "partial")


def binary_market(sim: SimServer) -> str:
    return next(
        cid
        for cid, m in sim.world.markets.items()
        if m.book is not None and not m.neg_risk_clob and not m.closed
    )


async def test_markets_and_a_market_with_its_books_best_first(store: Store, sim: SimServer) -> None:
    cid = binary_market(sim)
    sim.world.markets[cid].question = XSS
    await ingest(sim, store)
    async with served(store) as (http, url):
        listing = await get(http, url + "/api/markets")
        assert listing["count"] == len(listing["markets"]) > 0
        row = next(m for m in listing["markets"] if m["condition_id"] == cid)
        assert row["question"] == XSS  # JSON carries the text; the page sets it as text
        market = await get(http, f"{url}/api/markets/{cid}")
        assert market["question"] == XSS
        tokens = sim.world.markets[cid].token_ids
        assert [t["token_id"] for t in market["tokens"]] == tokens
        for token in market["tokens"]:
            truth = truth_levels(sim, token["token_id"])
            assert truth is not None
            bids, asks = truth
            assert token["bids"] == [[p, s] for p, s in bids]
            assert token["asks"] == [[p, s] for p, s in asks]
            assert set(token) >= {"token_id", "outcome", "bids", "asks"}
        yes = market["tokens"][0]
        assert (row["best_bid"], row["best_ask"]) == (yes["best_bid"], yes["best_ask"])
        assert row["spread"] == round(yes["best_ask"] - yes["best_bid"], 6)
        await get(http, f"{url}/api/markets/0xnope", status=404)
        trades = await get(http, f"{url}/api/markets/{cid}/trades?limit=500")
        assert all(t["large"] == (t["usd_value"] >= 10_000) for t in trades["trades"])
        history = await get(http, f"{url}/api/markets/{cid}/history?hours=48")
        assert history["archive"]["enabled"] is False and history["source"] == "database"
        assert {"mid", "last_trade", "open_interest"} <= history.keys()
        await get(http, f"{url}/api/markets/{cid}/history?hours=-1", status=400)
        coverage = await get(http, url + "/api/coverage")
        assert coverage["count"] >= listing["count"] and coverage["archive"]["enabled"] is False
        status = await get(http, url + "/api/status")
        from polytape.status import Health, StatusReport, status_json

        assert status_json(StatusReport(Health(), {})).keys() <= status.keys()  # status --json, and more
        assert status["verdict"] == "unhealthy" and status["problems"]  # no polytape run is running
        assert status["store"]["tracked_markets"] == listing["count"]
        assert status["archive"]["enabled"] is False
        # The page shell escapes what it renders and sends a strict content policy.
        async with http.get(url + "/markets/" + quote('<script>alert("x")<"x')) as resp:
            html = await resp.text()
            assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)" in html
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


async def test_signals_api_and_stream(store: Store) -> None:
    now = datetime.now(UTC)

    def plant(key: str, kind: str, cid: str) -> None:
        row = {"dedupe_key": key, "signal_type": kind, "condition_id": cid, "token_id": None,
               "detected_at": now, "score": 1.0, "payload": {"question": XSS, "wallet": "0xw", "side": "BUY",
               "size": 1, "outcome": "Yes", "price": 0.5, "usd_value": 20_000}}  # fmt: skip
        store.write(lambda tx: sstore.insert_signals_returning(tx, [row]))

    plant("a", "large_trade", "0xa")
    plant("b", "oi_change", "0xb")
    async with served(store) as (http, url):
        every = await get(http, url + "/api/signals?since=1h")
        assert [s["dedupe_key"] for s in every["signals"]] == ["a", "b"]
        only = await get(http, url + "/api/signals?since=1h&type=large_trade")
        assert [s["dedupe_key"] for s in only["signals"]] == ["a"]
        assert (await get(http, url + "/api/signals?market=0xb"))["signals"][0]["dedupe_key"] == "b"
        await get(http, url + "/api/signals?type=whale", status=400)
        await get(http, url + "/api/signals?since=yesterday-ish", status=400)

        async with http.get(url + "/api/signals/stream?type=large_trade") as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert (await resp.content.readline()).startswith(b"retry:")
            plant("c", "oi_change", "0xb")  # filtered out
            plant("d", "large_trade", "0xd")
            events: list[dict[str, Any]] = []
            while not events:
                line = await asyncio.wait_for(resp.content.readline(), 10)
                if line.startswith(b"data:") and b'"dedupe_key"' in line:
                    events.append(json.loads(line[5:]))
        assert [e["dedupe_key"] for e in events] == ["d"]
        assert events[0]["payload"]["question"] == XSS


async def test_no_write_endpoints_and_loopback_by_default(store: Store) -> None:
    app = create_app(store, Settings())
    methods = {route.method for route in app.router.routes()}
    assert methods <= {"GET", "HEAD"}
    assert Settings().web_host == "127.0.0.1" and Settings().web_port == 8765
    async with served(store) as (http, url):
        assert url.startswith("http://127.0.0.1:")
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with http.request(method, url + "/api/markets") as resp:
                assert resp.status == 405


async def test_price_history_and_coverage_from_the_archive(
    store: Store, sim: SimServer, tmp_path: Path
) -> None:
    from polytape.archive import ArchiveWriter

    cid = binary_market(sim)
    yes, no = sim.world.markets[cid].token_ids
    await ingest(sim, store)
    root = tmp_path / "archive"
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    t0 = now_us - 30 * 60 * 1_000_000
    writer = ArchiveWriter(root)
    writer.record_snapshot(yes, cid, t0, t0, [(0.40, 10.0)], [(0.44, 10.0)])
    writer.record_changes(yes, cid, t0 + 60_000_000, t0 + 60_000_000, [("bid", 0.42, 5.0)])
    writer.record_trade(no, cid, t0 + 90_000_000, t0 + 90_000_000, id="t1", side="buy", price=0.55, amount=3)
    writer.record_gap(yes, t0 + 100_000_000, t0 + 160_000_000, "disconnect", t0 + 160_000_000)
    writer.flush()
    writer.close()
    async with served(store, archive_dir=root) as (http, url):
        history = await get(http, f"{url}/api/markets/{cid}/history?hours=1")
        assert history["source"] == "archive" and history["archive"]["enabled"] is True
        assert [p[1] for p in history["mid"]] == [0.42, 0.43]
        assert [p[1] for p in history["last_trade"]] == [0.45]  # the NO trade, seen from YES
        coverage = await get(http, url + "/api/coverage")
        mine = next(t for t in coverage["tokens"] if t["token_id"] == yes)
        assert [g["reason"] for g in mine["gaps"]] == ["disconnect"]
        assert 0 < mine["recorded_share"] < 1
        status = await get(http, url + "/api/status")
        assert status["archive"]["enabled"] is True and status["archive"]["files"] >= 2
    async with served(store, archive_enabled=False) as (http, url):
        off = await get(http, f"{url}/api/markets/{cid}/history?hours=1")
        assert off["source"] == "database" and off["archive"]["reason"] == "POLYTAPE_ARCHIVE_ENABLED is false"
