"""The seed's ``run_signal_engine`` job: one evaluation pass, and the live hook.

``run(ctx)`` evaluates every rule once (``polytape job run-signal-engine`` and the
scheduler, every ``run_signal_engine_interval`` seconds). ``attach_live_signals(ctx)``
is called by ``polytape run`` when the WebSocket feed is on: it sets
``ctx.runtime.on_book_change`` so the feed's book changes re-run the book rules,
coalesced, within a second of the update. Both share one :class:`SignalEngine` (and
alert dispatcher, :mod:`polytape.alerts`) kept in ``ctx.runtime``. Live books come from
``ctx.runtime.books``; the feed (``ctx.runtime.book_feed``) vouches for quiet ones
(:mod:`polytape.signals.live`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polytape.alerts import build_dispatcher
from polytape.books import BookRegistry
from polytape.jobs.base import JobContext, JobResult
from polytape.runtime import SignalSink
from polytape.signals.engine import SignalEngine

if TYPE_CHECKING:
    from polytape.bookfeed.service import BookFeed

SINK_DRAIN_SECONDS = 5.0  # a one-shot run waits this long for its alerts


def signal_sink(ctx: JobContext) -> SignalSink | None:
    """The alert dispatcher of this process (made on first use), or None without alert URLs."""
    if ctx.runtime.signal_sink is None:
        sink = build_dispatcher(ctx.settings, ctx.store, clock=ctx.clock)
        if sink is not None:
            sink.start()  # digests of what an earlier process held back go out without a new signal
        ctx.runtime.signal_sink = sink
    return ctx.runtime.signal_sink


def signal_engine(ctx: JobContext) -> SignalEngine:
    """The engine of this process, reading live books from ``ctx.runtime.books`` when present."""
    runtime = ctx.runtime
    if runtime.signal_engine is not None:
        return runtime.signal_engine

    def live_books() -> BookRegistry | None:
        return runtime.books

    def live_feed() -> BookFeed | None:
        return runtime.book_feed

    engine = SignalEngine(ctx.store, ctx.settings, registry=live_books, feed=live_feed, clock=ctx.clock)
    sink = signal_sink(ctx)
    if sink is not None:
        engine.listeners.append(sink.submit)
    runtime.signal_engine = engine
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
    sink = ctx.runtime.signal_sink
    if sink is not None and outcome.written and not await sink.drain(SINK_DRAIN_SECONDS):
        result.details["alerts_pending"] = True
    return result


def attach_live_signals(ctx: JobContext) -> None:
    """Evaluate the book rules whenever the feed changes books (``ctx.runtime.on_book_change``)."""
    ctx.runtime.on_book_change = signal_engine(ctx).on_book_change
