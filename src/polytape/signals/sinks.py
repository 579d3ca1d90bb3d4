"""Where signals go besides the database: an optional webhook.

:class:`WebhookSink` POSTs each new signal as JSON (with a Slack ``text`` and a
Discord ``content`` field) from a background task. ``submit`` never waits: signals
wait in a bounded queue, and when it is full the newest are dropped with a counted
warning. Each POST is retried with capped, jittered exponential backoff by the
project's HTTP layer; a signal that still fails is logged and counted, never
raised into the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog

from polytape import metrics
from polytape.errors import ApiError, PayloadError
from polytape.http import HttpClient, HttpConfig
from polytape.signals.format import webhook_body
from polytape.signals.news import is_news

log = structlog.get_logger("polytape.signals.webhook")

QUEUE_SIZE = 1000


def split_url(url: str) -> tuple[str, str]:
    """``https://host/a/b?x=1`` → (``https://host``, ``/a/b?x=1``): posts go to the exact URL."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}", path + (f"?{parts.query}" if parts.query else "")


class WebhookSink:
    """Posts signals to one webhook URL without ever blocking the caller."""

    def __init__(
        self,
        url: str,
        config: HttpConfig,
        *,
        queue_size: int = QUEUE_SIZE,
        horizon: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        base, self.path = split_url(url)
        self.url = url
        self.horizon = horizon
        self._clock = clock
        self.held_back = 0
        self._client = HttpClient(base, config=config, name="webhook")
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue signals for posting (call from the event loop); drops when the queue is full."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._worker(), name="signal-webhook")
        now = self._clock()
        old = 0
        for row in rows:
            if self.horizon is not None and not is_news(row, now, self.horizon):
                old += 1
                continue
            try:
                self._queue.put_nowait(webhook_body(row))
            except asyncio.QueueFull:
                self.dropped += 1
                metrics.WEBHOOK_DELIVERIES.labels(outcome="dropped").inc()
                log.warning("webhook queue full: signal dropped", dropped=self.dropped, url=self.url)
        if old:
            self.held_back += old
            log.info("signals older than the alert horizon stored, not delivered", signals=old)

    async def _worker(self) -> None:
        while True:
            body = await self._queue.get()
            try:
                await self._post(body)
                self.sent += 1
                metrics.WEBHOOK_DELIVERIES.labels(outcome="sent").inc()
            except ApiError as exc:
                self.failed += 1
                metrics.WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
                log.warning("webhook post failed", failed=self.failed, error=str(exc)[:300])
            finally:
                self._queue.task_done()

    async def _post(self, body: dict[str, Any]) -> None:
        try:
            await self._client.post_json(self.path, body)
        except PayloadError:
            pass  # delivered: Slack answers a 2xx plain "ok", not JSON

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to empty; True when it did."""
        if self._task is None:
            return self._queue.empty()
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop posting (what is still queued is counted as dropped) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = self._queue.qsize()
        self.dropped += left
        if left:
            metrics.WEBHOOK_DELIVERIES.labels(outcome="dropped").inc(left)
        await self._client.aclose()
