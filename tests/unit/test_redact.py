"""Issue 12 item 16: secrets in URLs never reach a log line."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from polytape.alerts import AlertDispatcher, build_dispatcher
from polytape.config import Settings
from polytape.logs import configure_logging
from polytape.redact import redact_urls
from polytape.store import Store


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
def test_alert_failures_do_not_log_the_secret(
    capsys: pytest.CaptureFixture[str], fmt: str, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/services/T1/B2/SECRETTOKEN?token=SECRETQUERY"
    configure_logging(fmt, "DEBUG")
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")

    async def go() -> AlertDispatcher:
        settings = Settings(signal_webhook_url=url, alert_max_attempts=2, alert_retry_base_seconds=0.01)
        sink = build_dispatcher(settings, store)
        assert sink is not None
        now = datetime.now(UTC)
        row = {"dedupe_key": "k", "signal_type": "large_trade", "detected_at": now, "payload": {}}
        sink.submit([row])
        await sink.drain(10)
        await sink.aclose()
        return sink

    try:
        asyncio.run(go())
        structlog.get_logger("t").exception("boom", exc_info=ValueError(url))
    finally:
        structlog.reset_defaults()  # the captured stderr closes after this test
        store.close()
    logged = capsys.readouterr().err
    assert "alert not delivered" in logged and "alert delivery retry" in logged
    assert "SECRET" not in logged and "127.0.0.1" in logged
