"""The seed's ``run_signal_engine`` job: one evaluation pass, and the live hook.

``run(ctx)`` evaluates every rule once (``polytape job run-signal-engine`` and the
scheduler, every ``run_signal_engine_interval`` seconds). ``attach_live_signals(ctx)``
is called by ``polytape run`` when the WebSocket feed is on: it sets
``ctx.shared["on_book_change"]`` so the feed's book changes re-run the book rules,
coalesced, within a second of the update. Both share one :class:`SignalEngine` (and
webhook sink) kept in ``ctx.shared``. Live books come from ``ctx.shared["books"]``; the
feed (``ctx.shared["book_feed"]``) vouches for quiet ones (:mod:`polytape.signals.live`).
"""

from __future__ import annotations

from typing import Any

from polytape.app import http_config
from polytape.books import BookRegistry
from polytape.http import HttpConfig
from polytape.jobs.base import JobContext, JobResult
from polytape.signals.engine import SignalEngine
from polytape.signals.sinks import WebhookSink

ENGINE_KEY = "signal_engine"
SINK_KEY = "signal_sink"
SINK_DRAIN_SECONDS = 5.0  # a one-shot run waits this long for its webhook posts


def signal_sink(ctx: JobContext) -> WebhookSink | None:
    """The webhook sink of this process (made on first use), or None without a URL."""
    url = ctx.settings.signal_webhook_url
    if not url:
        return None
    sink = ctx.shared.get(SINK_KEY)
    if not isinstance(sink, WebhookSink):
        cfg = http_config(ctx.settings)
        assert isinstance(cfg, HttpConfig)
        sink = ctx.shared[SINK_KEY] = WebhookSink(url, cfg)
    return sink


def signal_engine(ctx: JobContext) -> SignalEngine:
    """The engine of this process, reading live books from ``ctx.shared["books"]`` when present."""
    engine = ctx.shared.get(ENGINE_KEY)
    if isinstance(engine, SignalEngine):
        return engine

    def live_books() -> BookRegistry | None:
        books: Any = ctx.shared.get("books")
        return books if isinstance(books, BookRegistry) else None

    engine = SignalEngine(
        ctx.store,
        ctx.settings,
        registry=live_books,
        feed=lambda: ctx.shared.get("book_feed"),
        clock=ctx.clock,
    )
    sink = signal_sink(ctx)
    if sink is not None:
        engine.listeners.append(sink.submit)
    ctx.shared[ENGINE_KEY] = engine
    return engine


async def run(ctx: JobContext) -> JobResult:
    """One pass over the newest trades, the fresh books and the metrics."""
    engine = signal_engine(ctx)
    outcome = await engine.run_pass(ctx.clock())
    result = JobResult(rows_written=len(outcome.written))
    result.details.update(
        trades_seen=outcome.trades_seen, books_seen=outcome.books_seen, signals=outcome.counts()
    )
    if outcome.more_trades:
        result.details["backlog"] = True  # the rest of the trades wait for the next pass
    sink = ctx.shared.get(SINK_KEY)
    if isinstance(sink, WebhookSink) and outcome.written and not await sink.drain(SINK_DRAIN_SECONDS):
        result.details["webhook_pending"] = True
    return result


def attach_live_signals(ctx: JobContext) -> None:
    """Evaluate the book rules whenever the feed changes books (``ctx.shared["on_book_change"]``)."""
    ctx.shared["on_book_change"] = signal_engine(ctx).on_book_change
