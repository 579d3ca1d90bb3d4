"""The runtime of one polytape process: the context every job gets, its live components
and the hooks between them.

:class:`JobContext` (settings, store, API clients, clock, runtime) is built once by
:func:`polytape.app.job_context` and passed down to jobs, backfills and the feed. One
:class:`Runtime` is made with it and reaches every job as ``ctx.runtime``. Every field
is optional: a one-shot ``polytape job`` leaves them empty, ``polytape run`` fills them
as its components start.

=====================  ==========================================  =============================
field                  set by                                      read by
=====================  ==========================================  =============================
``books``              the WebSocket feed (:class:`BookFeed`)      the signal engine
``book_feed``          the WebSocket feed                          the signal engine (how current)
``on_book_change``     ``run_signal_engine.attach_live_signals``   the feed, after each frame
``on_universe_change`` the WebSocket feed                          ``refresh-universe``
``signal_engine``      ``run_signal_engine.signal_engine``         the job and the live hook
``signal_sink``        ``run_signal_engine.signal_sink``           the engine's listeners
``web``                ``polytape run --web`` (the dashboard)      nobody (closed first)
``worker_id``          ``polytape run`` (:mod:`polytape.runner`)   ``job_runs.worker_id``
``on_handover``        the archive (gap ledger)                    :class:`~polytape.workers.WorkerLeases`
``archive``            :func:`polytape.app.job_context`            the feed, ``sync-orderbooks``,
                       (``POLYTAPE_ARCHIVE_ENABLED``)              the trade jobs (recording)
=====================  ==========================================  =============================

Adding a component (an archive writer, a lease manager, a web server, ...): give it a
typed optional field here (default ``None``), set it where the component is built, and
if it holds resources make it a :class:`Closeable` and add its field name to
:data:`CLOSE_ORDER`. :meth:`Runtime.aclose`, called once when the process's context
ends, closes every such component in that order; nothing else closes them.

This module imports nothing of polytape at run time (types only), so any package may
use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

if TYPE_CHECKING:
    from datetime import datetime

    from polytape.archive.service import BookArchive
    from polytape.bookfeed.service import BookFeed
    from polytape.books import BookRegistry
    from polytape.clients import ApiClients
    from polytape.config import Settings
    from polytape.signals.engine import SignalEngine
    from polytape.store import Store
    from polytape.store.workers import Handover

log = structlog.get_logger("polytape.runtime")


class BookChangeHook(Protocol):
    """Called (on the event loop) with the token ids whose live books just changed."""

    def __call__(self, changed: set[str], /) -> None: ...


class UniverseChangeHook(Protocol):
    """Called after a universe refresh with the token ids that entered and left it."""

    def __call__(self, added: set[str], removed: set[str], /) -> Awaitable[None] | None: ...


class HandoverHook(Protocol):
    """Called when this worker took tokens over from another: each was unrecorded since
    ``handover.since`` until ``until`` (the archive's gap ledger records that)."""

    def __call__(self, handovers: list[Handover], until: datetime, /) -> None: ...


@runtime_checkable
class Closeable(Protocol):
    """A component holding resources (sockets, tasks, files) until :meth:`aclose`."""

    async def aclose(self) -> None: ...


class SignalSink(Closeable, Protocol):
    """Where new signals go besides the database (the alert dispatcher)."""

    def submit(self, rows: Iterable[Mapping[str, Any]], /) -> None:
        """Queue signal rows; never blocks the caller."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for queued signals to go out; True if all did."""
        ...


# Field names of :class:`Runtime` closed by :meth:`Runtime.aclose`, in this order.
CLOSE_ORDER: tuple[str, ...] = ("web", "signal_sink", "archive")


@dataclass
class Runtime:
    """Live components of this process (see the module notes for who sets and reads what)."""

    books: BookRegistry | None = None
    book_feed: BookFeed | None = None
    on_book_change: BookChangeHook | None = None
    on_universe_change: UniverseChangeHook | None = None
    signal_engine: SignalEngine | None = None
    signal_sink: SignalSink | None = None
    web: Closeable | None = None
    worker_id: str | None = None  # this ``polytape run`` process's ``workers`` row
    on_handover: HandoverHook | None = None
    archive: BookArchive | None = None

    async def aclose(self, timeout: float = 10.0) -> None:
        """Close every component in :data:`CLOSE_ORDER`; a failure is logged, never raised."""
        for name in CLOSE_ORDER:
            component = getattr(self, name)
            if component is None:
                continue
            try:
                await asyncio.wait_for(component.aclose(), timeout=timeout)
            except Exception:
                log.warning("could not close cleanly", component=name, exc_info=True)
            setattr(self, name, None)


def utcnow() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


@dataclass
class JobContext:
    """Everything a job (or a backfill) may touch, built once and passed down."""

    settings: Settings
    store: Store
    clients: ApiClients
    clock: Callable[[], datetime] = utcnow
    runtime: Runtime = field(default_factory=Runtime)
    """The process's live components and hooks (the feed's books, the signal engine, ...)."""
