"""Issue 12 item 16: secrets in URLs never reach a log line."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest
import structlog
from polytape.signals.sinks import WebhookSink

from polytape.http import HttpConfig
from polytape.logs import configure_logging
from polytape.redact import redact_urls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "POST https://hooks.slack.com/services/T1/B2/SECRET failed",
            "POST https://hooks.slack.com/… failed",
        ),
        ("https://api.telegram.org/botTOKEN:abc/sendMessage", "https://api.telegram.org/…"),
        ("url='http://127.0.0.1:9/x?key=SECRET'", "url='http://127.0.0.1:9/…'"),
        ("postgresql://rec:SECRET@db:5432/rec", "postgresql://rec:***@db:5432/…"),
        ("https://gamma-api.polymarket.com", "https://gamma-api.polymarket.com"),
        ("no url here", "no url here"),
    ],
)
def test_redact_urls(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_webhook_failures_do_not_log_the_secret(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/services/T1/B2/SECRETTOKEN?token=SECRETQUERY"
    configure_logging(fmt, "DEBUG")

    async def go() -> WebhookSink:
        sink = WebhookSink(url, HttpConfig(max_retries=1, backoff_base=0.01), queue_size=1)
        row = {"signal_type": "large_trade", "detected_at": datetime.now(UTC), "payload": {}}
        sink.submit([row, row, row])  # the queue holds one: the others are dropped, with a warning
        await sink.drain(10)
        await sink.aclose()
        return sink

    try:
        sink = asyncio.run(go())
        structlog.get_logger("t").exception("boom", exc_info=ValueError(url))
    finally:
        structlog.reset_defaults()  # the captured stderr closes after this test
    logged = capsys.readouterr().err
    assert sink.failed == 1 and sink.dropped == 2
    assert "webhook post failed" in logged and "queue full" in logged and "http retry" in logged
    assert "SECRET" not in logged and "127.0.0.1" in logged
