"""Alerts through Apprise, counted at a local JSON receiver on 127.0.0.1, on both engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from polytape.alerts import AlertDispatcher, build_dispatcher
from polytape.config import Settings
from polytape.errors import ConfigError
from polytape.store import Store
from polytape.store import alerts as astore
from polytape.store import signals as sstore
from tests.support.loopback import serve_app
from tests.support.waiting import wait_until

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """A JSON webhook on loopback: what arrived on each path, and how to misbehave."""

    base: str = ""
    got: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_first: int = 0
    calls: int = 0
    gate: asyncio.Event | None = None

    def url(self, path: str) -> str:
        return self.base.replace("http://", "json://") + path

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return self.got.get(path, [])


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        rec.calls += 1
        if rec.gate is not None:
            await rec.gate.wait()
        if rec.calls <= rec.fail_first:
            return web.Response(status=503, text="busy")
        rec.got.setdefault(request.path, []).append(json.loads(await request.text()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{name}", hook)
    async with serve_app(app) as base_url:
        rec.base = base_url
        yield rec


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def payload(kind: str, cid: str, score: float) -> dict[str, Any]:
    if kind == "price_move":
        return {"question": f"Market {cid}?", "basis": "mid", "direction": "up", "from_price": 0.4,
                "to_price": 0.4 + score, "move": score, "window_minutes": 30.0}  # fmt: skip
    return {"question": f"Market {cid}?", "wallet": "0xw", "side": "BUY", "size": score, "outcome": "Yes",
            "price": 0.5, "usd_value": score}  # fmt: skip


def signal_rows(store: Store, specs: list[tuple[str, str, float]], at: datetime) -> list[dict[str, Any]]:
    """Store signals ``(signal_type, condition_id, score)``; return them as the engine hands them on."""
    rows = [
        {
            "dedupe_key": f"{kind}:{cid}:{i}:{at.isoformat()}",
            "signal_type": kind,
            "condition_id": cid,
            "token_id": None,
            "detected_at": at,
            "score": score,
            "payload": payload(kind, cid, score),
        }
        for i, (kind, cid, score) in enumerate(specs)
    ]
    return store.write(lambda tx: sstore.insert_signals_returning(tx, rows))


def dispatcher(store: Store, clock: Clock, **settings: Any) -> AlertDispatcher:
    s = Settings(alert_retry_base_seconds=0.01, **settings)
    d = build_dispatcher(s, store, clock=clock)
    assert d is not None
    return d


async def test_filters_per_url_and_no_repeat(store: Store) -> None:
    clock = Clock(T0)
    async with receiver() as rec:
        urls = [
            rec.url("/all"),
            "types=large_trade;" + rec.url("/trades"),
            "min_score=50000;" + rec.url("/big"),
        ]
        d = dispatcher(store, clock, alert_urls=urls)
        rows = signal_rows(
            store,
            [("large_trade", "0xa", 20_000), ("large_trade", "0xb", 80_000), ("price_move", "0xc", 0.2)],
            T0,
        )
        d.submit(rows)
        assert await d.drain(30)
        assert len(rec.bodies("/all")) == 3
        assert len(rec.bodies("/trades")) == 2
        assert [b["message"] for b in rec.bodies("/big")] == [
            next(b["message"] for b in rec.bodies("/all") if "0xb" in b["message"])
        ]
        body = rec.bodies("/trades")[0]
        assert body["title"] == "polytape: large_trade" and "Market 0xa?" in body["message"]
        # The same signals again, in this process and in a new one: nothing more goes out.
        d.submit(rows)
        assert await d.drain(30)
        await d.aclose()
        again = dispatcher(store, clock, alert_urls=urls)
        again.submit(rows)
        assert await again.drain(30)
        await again.aclose()
        assert (len(rec.bodies("/all")), len(rec.bodies("/trades")), len(rec.bodies("/big"))) == (3, 2, 1)
    log = astore.recent(store)
    assert sorted(r["status"] for r in log) == ["sent"] * 6


async def test_rate_limit_per_market_then_one_digest(store: Store) -> None:
    clock = Clock(T0)
    async with receiver() as rec:
        d = dispatcher(store, clock, alert_urls=rec.url("/chat"), alert_max_per_hour=2)
        noisy = signal_rows(store, [("price_move", "0xnoisy", 0.1 * i) for i in range(1, 6)], T0)
        quiet = signal_rows(store, [("price_move", "0xquiet", 0.3)], T0)
        d.submit(noisy + quiet)
        assert await d.drain(30)
        messages = [b["message"] for b in rec.bodies("/chat")]
        assert sum("0xnoisy" in m for m in messages) == 2 and sum("0xquiet" in m for m in messages) == 1
        held = [r for r in astore.recent(store) if r["status"] == "held"]
        assert len(held) == 3 and {r["market"] for r in held} == {"0xnoisy"}
        # An hour later the window has room: one digest of the three held back.
        clock.now = T0 + timedelta(hours=1, seconds=1)
        await d._flush_digests(d.lanes[0])
        await d.aclose()
    digest = rec.bodies("/chat")[-1]
    assert len(rec.bodies("/chat")) == 4
    assert "3 alert(s) held back" in digest["title"] and digest["message"].count("\n- ") == 3


async def test_what_was_held_back_before_a_restart_goes_out_in_a_digest(store: Store) -> None:
    """A process holds signals back and stops before the window has room; the next one
    (started, no new signal) sends their digest once the window has room, and a third
    sends nothing again: the digest covered them."""
    clock = Clock(T0)
    async with receiver() as rec:
        first = dispatcher(store, clock, alert_urls=rec.url("/chat"), alert_max_per_hour=1)
        first.submit(signal_rows(store, [("price_move", "0xnoisy", 0.1 * i) for i in range(1, 5)], T0))
        assert await first.drain(30)
        await first.aclose()
        assert len(rec.bodies("/chat")) == 1
        assert [r["status"] for r in astore.recent(store)].count("held") == 3

        clock.now = T0 + timedelta(minutes=30)  # still inside the hour: restored, not sent
        second = dispatcher(store, clock, alert_urls=rec.url("/chat"), alert_max_per_hour=1)
        second.start()
        await wait_until(lambda: second._seeding is not None and second._seeding.done(), timeout=10)
        assert sum(len(rows) for rows in second.lanes[0].held.values()) == 3
        assert len(rec.bodies("/chat")) == 1
        clock.now = T0 + timedelta(hours=1, seconds=1)
        await second._flush_digests(second.lanes[0])
        await second.aclose()
        digest = rec.bodies("/chat")[-1]
        assert len(rec.bodies("/chat")) == 2
        assert "3 alert(s) held back" in digest["title"] and digest["message"].count("\n- ") == 3

        third = dispatcher(store, clock, alert_urls=rec.url("/chat"), alert_max_per_hour=1)
        third.start()
        await wait_until(lambda: third._seeding is not None and third._seeding.done(), timeout=10)
        await asyncio.sleep(0.2)
        await third.aclose()
        assert not third.lanes[0].held and len(rec.bodies("/chat")) == 2


async def test_retries_with_backoff_and_failures_are_logged(store: Store) -> None:
    clock = Clock(T0)
    async with receiver() as rec:
        rec.fail_first = 2
        d = dispatcher(store, clock, alert_urls=rec.url("/flaky"), alert_max_attempts=4)
        d.submit(signal_rows(store, [("large_trade", "0xa", 1.0)], T0))
        assert await d.drain(30)
        assert len(rec.bodies("/flaky")) == 1
        [row] = astore.recent(store)
        assert (row["status"], row["attempts"]) == ("sent", 3)
        rec.fail_first = 10**6
        d.submit(signal_rows(store, [("large_trade", "0xb", 1.0)], T0 + timedelta(seconds=1)))
        assert await d.drain(30)
        await d.aclose()
    newest = astore.recent(store)[0]
    assert (newest["status"], newest["attempts"]) == ("failed", 4) and newest["error"]


async def test_stale_signals_are_logged_not_sent(store: Store) -> None:
    clock = Clock(T0)
    async with receiver() as rec:
        d = dispatcher(store, clock, alert_urls=rec.url("/x"), alert_horizon_minutes=15)
        d.submit(signal_rows(store, [("large_trade", "0xold", 1.0)], T0 - timedelta(hours=2)))
        d.submit(signal_rows(store, [("large_trade", "0xnew", 1.0)], T0 - timedelta(minutes=1)))
        # Detected now, about a trade of an hour ago (a fresh database's first pass): not news.
        [late] = signal_rows(store, [("large_trade", "0xhistory", 1.0)], T0)
        late["payload"]["trade_ts"] = (T0 - timedelta(hours=1)).isoformat()
        d.submit([late])
        assert await d.drain(30)
        await d.aclose()
        assert ["0xnew" in b["message"] for b in rec.bodies("/x")] == [True]
    statuses = {r["market"]: r["status"] for r in astore.recent(store)}
    assert statuses == {"0xold": "stale", "0xnew": "sent", "0xhistory": "stale"}


async def test_submit_never_waits_for_a_slow_channel(store: Store) -> None:
    clock = Clock(T0)
    async with receiver() as rec:
        rec.gate = asyncio.Event()  # the receiver hangs until released
        d = dispatcher(store, clock, alert_urls=rec.url("/slow"))
        rows = signal_rows(store, [("large_trade", f"0x{i}", 1.0) for i in range(5)], T0)
        d.submit(rows)  # returns at once: the posts wait in the background
        await wait_until(lambda: rec.calls >= 1, 10, "the first post to reach the receiver")
        assert rec.bodies("/slow") == []
        d.submit(signal_rows(store, [("large_trade", "0xlater", 1.0)], T0))
        rec.gate.set()
        assert await d.drain(30)
        await d.aclose()
        assert len(rec.bodies("/slow")) == 6


async def test_the_old_webhook_setting_is_a_json_url(store: Store) -> None:
    clock = Clock(T0)
    async with receiver() as rec:
        d = dispatcher(store, clock, signal_webhook_url=rec.base + "/legacy")
        [lane] = d.lanes
        assert lane.channel.name.startswith(rec.base.replace("http://", "json://") + "/… [")
        d.submit(signal_rows(store, [("large_trade", "0xa", 1.0)], T0))
        assert await d.drain(30)
        await d.aclose()
    assert len(rec.bodies("/legacy")) == 1


def test_bad_alert_urls_are_config_errors(store: Store) -> None:
    with pytest.raises(ConfigError, match="unknown signal type"):
        build_dispatcher(Settings(alert_urls="types=whale;json://127.0.0.1/x"), store)
    with pytest.raises(ConfigError, match="does not understand"):
        build_dispatcher(Settings(alert_urls="nosuchscheme://x"), store)
    with pytest.raises(ValueError, match="min_score"):
        Settings(alert_urls="min_score=lots;json://127.0.0.1/x")
    secret = "tgram://123456789:SECRETTOKEN/42/"
    hook = "json://127.0.0.1:9/services/T1/B2/SECRETPATH"
    d = build_dispatcher(Settings(alert_urls=[secret, hook]), store)
    assert d is not None and not any("SECRET" in lane.channel.name for lane in d.lanes)


async def test_status_summarizes_the_delivery_log(store: Store) -> None:
    from rich.console import Console

    from polytape.status import assess, render
    from polytape.store.status import status_snapshot

    clock = Clock(datetime.now(UTC))
    async with receiver() as rec:
        d = dispatcher(store, clock, alert_urls=[rec.url("/ok"), rec.url("/down")], alert_max_attempts=1)
        d.submit(signal_rows(store, [("large_trade", "0xa", 1.0)], clock.now))
        assert await d.drain(30)
        await d.aclose()
    now = datetime.now(UTC)
    snap = status_snapshot(store, now, book_stale_before=now, since=now - timedelta(hours=1))
    names = sorted(lane.channel.name for lane in d.lanes)
    assert [(a["channel"], a.get("sent")) for a in snap["alerts"]] == [(n, 1) for n in names]
    console = Console(record=True, width=200)
    render(assess(snap, Settings(), now), snap, console)
    text = console.export_text()
    assert "alerts (last 24 h)" in text and names[0] in text and "/ok" not in text
