"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against
the simulator over real sockets (ingestion by the real jobs and the WebSocket feed).

Screenshots of every page go under the test's temp dir (``<tmp_path>/screens``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from polytape.jobs import run_signal_engine
from polytape.jobs.base import JobContext, run_job
from polytape.jobs.registry import JOBS
from polytape.sim import SimServer
from polytape.store import Store
from polytape.store.schema import signal_events
from polytape.store.universe import tracked_tokens
from polytape.web import WebServer
from tests.support.waiting import wait_until

from .books_support import running_feed
from .support import sim_context
from .test_signals import EVERYTHING, make_arbitrage_free, neg_risk_event, plant_neg_risk_asks, quiet_world

XSS = '<img src=x onerror="alert(1)"> <script>alert(2)</script>'
CHROMIUM = os.environ.get("POLYTAPE_TEST_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)"
)


@asynccontextmanager
async def browser_page(console_errors: list[str]) -> AsyncIterator[Any]:
    """A fresh Chromium page; console errors and page exceptions are collected."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(f"page error: {e}"))
            page.on("dialog", lambda d: console_errors.append(f"a script ran: dialog {d.message}"))
            yield page
        finally:
            await browser.close()


@asynccontextmanager
async def world_with_web(
    sim: SimServer, store: Store, *, live_signals: bool = False
) -> AsyncIterator[tuple[JobContext, str]]:
    """Metadata, universe, trades, open interest and the live feed, then the dashboard on port 0
    reading only the database (as ``polytape web`` does)."""
    async with sim_context(sim, store, **EVERYTHING, web_port=0) as ctx:
        for job in ("sync-gamma-events", "refresh-universe", "sync-large-trades", "sync-open-interest"):
            assert (await run_job(ctx, job, JOBS[job])).status in ("ok", "partial")
        if live_signals:
            run_signal_engine.attach_live_signals(ctx)
        tokens = await asyncio.to_thread(tracked_tokens, store)
        async with running_feed(ctx, universe_poll_seconds=0.5):
            await wait_until(lambda: tokens.keys() <= ctx.runtime.books.books.keys(), 20, "every live book")
            server = WebServer(store, ctx.settings)
            url = await server.start()
            try:
                yield ctx, url
            finally:
                await server.aclose()


async def _listed(page: Any, n: int) -> bool:
    """True when the signals page lists exactly ``n`` signals."""
    return int(await page.locator("#signals li").count()) == n


def binary_with_book(sim: SimServer) -> tuple[str, str]:
    """(condition id, YES token) of an open, non-neg-risk market with a book."""
    for cid, m in sim.world.markets.items():
        if m.book is not None and not m.neg_risk_clob and not m.closed:
            return cid, m.token_ids[0]
    raise AssertionError("no binary market with a book")


def truth_top(sim: SimServer, token_id: str) -> tuple[str, str]:
    book = sim.world.books[token_id]
    bid = max(float(lvl["price"]) for lvl in book["bids"])
    ask = min(float(lvl["price"]) for lvl in book["asks"])
    return f"{bid:.3f}", f"{ask:.3f}"


async def test_every_page_loads_and_the_book_follows_the_simulator(sqlite_url: str, tmp_path: Path) -> None:
    errors: list[str] = []
    screens = tmp_path / "screens"
    screens.mkdir()
    store = Store.open(sqlite_url)
    try:
        async with SimServer(seed=7) as sim:
            cid, yes = binary_with_book(sim)
            sim.world.markets[cid].question = XSS  # user-written text must stay text
            async with world_with_web(sim, store) as (_ctx, url), browser_page(errors) as page:
                pages = [
                    ("overview", "/", "#jobs tbody tr"),
                    ("markets", "/markets", "#markets tbody tr"),
                    ("market", f"/markets/{cid}", f'.token[data-token-id="{yes}"] .best-bid'),
                    ("signals", "/signals", "#stream-state.good"),
                    ("coverage", "/coverage", "#coverage tbody tr"),
                ]
                for name, path, ready in pages:
                    await page.goto(url + path)
                    await page.wait_for_selector(ready, timeout=15_000)
                    if name != "signals":  # the stream never goes idle
                        await page.wait_for_load_state("networkidle")
                    await page.screenshot(path=str(screens / f"{name}.png"), full_page=True)

                # The market page shows the simulator's best bid and ask, and follows a change.
                await page.goto(url + f"/markets/{cid}")
                card = f'.token[data-token-id="{yes}"]'

                async def shown() -> tuple[str, str]:
                    bid = await page.text_content(f"{card} .best-bid")
                    ask = await page.text_content(f"{card} .best-ask")
                    return bid or "", ask or ""

                async def shows(want: tuple[str, str]) -> bool:
                    return await shown() == want

                want = truth_top(sim, yes)
                await wait_until(lambda: shows(want), 10, f"the page to show {want}")
                sim.world.set_book(yes, [(0.31, 120), (0.30, 50)], [(0.37, 80), (0.40, 10)])
                assert truth_top(sim, yes) == ("0.310", "0.370")
                await wait_until(lambda: shows(("0.310", "0.370")), 10, "the page to follow the new book")
                await page.screenshot(path=str(screens / "market-after-change.png"), full_page=True)
                assert await page.text_content("#question") == XSS
    finally:
        store.close()
    assert errors == []
    assert sorted(p.name for p in screens.iterdir()) == [
        "coverage.png", "market-after-change.png", "market.png", "markets.png", "overview.png", "signals.png",
    ]  # fmt: skip


async def test_a_provoked_signal_reaches_the_stream_within_two_seconds(
    sqlite_url: str, tmp_path: Path
) -> None:
    errors: list[str] = []
    store = Store.open(sqlite_url)
    try:
        async with SimServer(quiet_world()) as sim:
            make_arbitrage_free(sim)
            cids = neg_risk_event(sim)
            async with (
                world_with_web(sim, store, live_signals=True) as (_ctx, url),
                browser_page(errors) as page,
            ):
                await page.goto(url + "/signals")
                await page.wait_for_selector("#stream-state.good", timeout=15_000)
                assert await page.locator("#signals li").count() == 0
                provoked = time.monotonic()
                plant_neg_risk_asks(sim, cids, 0.93)
                item = page.locator('#signals li[data-type="neg_risk_arb"]')
                await item.first.wait_for(timeout=10_000)
                shown_after = time.monotonic() - provoked
                await page.screenshot(path=str(tmp_path / "signals-stream.png"), full_page=True)
                text = await item.first.text_content()
                # The filters: another type hides it, its own type and market show it again.
                await page.select_option("#type", "large_trade")
                await wait_until(lambda: _listed(page, 0), 10, "the type filter")
                await page.select_option("#type", "neg_risk_arb")
                await wait_until(lambda: _listed(page, 1), 10, "its own type")
                await page.fill("#market", cids[0])
                await page.press("#market", "Enter")
                await wait_until(lambda: _listed(page, 1), 10, "a market of its event")
                await page.fill("#market", "0xnotamarket")
                await page.press("#market", "Enter")
                await wait_until(lambda: _listed(page, 0), 10, "another market")
        [row] = store.fetch_all(signal_events.select())
    finally:
        store.close()
    assert row["signal_type"] == "neg_risk_arb" and "0.93" in (text or "")
    print(f"provoked arbitrage shown in the stream after {shown_after:.2f}s")
    assert shown_after <= 2.0, f"the signal took {shown_after:.2f}s to reach the page"
    assert errors == []
