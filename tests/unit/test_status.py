"""`polytape status` judgement: late, failed and silent things make it unhealthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from polytape.config import Settings
from polytape.status import assess, expected_jobs

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def snapshot(settings: Settings, **kw: Any) -> dict[str, Any]:
    runs = [
        {
            "job_name": name, "status": "ok", "started_at": NOW - timedelta(seconds=5),
            "finished_at": NOW - timedelta(seconds=4), "rows_written": 3, "error": None,
        }
        for name in expected_jobs(settings)
    ]  # fmt: skip
    snap: dict[str, Any] = {
        "runs": runs,
        "runner": {"updated_at": (NOW - timedelta(seconds=3)).isoformat(), "stopped_at": None},
        "ws_feed": {
            "updated_at": (NOW - timedelta(seconds=2)).isoformat(),
            "connections": 1,
            "tokens_subscribed": 10,
            "last_message_at": (NOW - timedelta(seconds=1)).isoformat(),
        },
        "stale_books": 0,
    }
    snap.update(kw)
    return snap


def test_healthy() -> None:
    s = Settings()
    h = assess(snapshot(s), s, NOW)
    assert h.ok, h.problems


def test_late_job_and_failed_job() -> None:
    s = Settings()
    snap = snapshot(s)
    for r in snap["runs"]:
        if r["job_name"] == "sync-large-trades":
            r["finished_at"] = NOW - timedelta(hours=1)
        if r["job_name"] == "sync-open-interest":
            r["status"], r["error"] = "error", "RetriesExhausted: boom"
    h = assess(snap, s, NOW)
    assert not h.ok
    assert any("sync-large-trades is late" in p for p in h.problems)
    assert any("sync-open-interest failed" in p for p in h.problems)


def test_never_ran_and_dead_runner() -> None:
    s = Settings()
    snap = snapshot(s, runner={"updated_at": (NOW - timedelta(minutes=5)).isoformat()})
    snap["runs"] = [r for r in snap["runs"] if r["job_name"] != "run-signal-engine"]
    h = assess(snap, s, NOW)
    assert "run-signal-engine has never run" in h.problems
    assert any("not running" in p for p in h.problems)


def test_stale_feed_is_unhealthy() -> None:
    s = Settings()
    silent = snapshot(s)
    silent["ws_feed"]["last_message_at"] = (NOW - timedelta(minutes=10)).isoformat()
    assert any("silent" in p for p in assess(silent, s, NOW).problems)
    gone = snapshot(s, ws_feed={"updated_at": (NOW - timedelta(minutes=2)).isoformat()})
    assert any("not reporting" in p for p in assess(gone, s, NOW).problems)
    stale = snapshot(s, stale_books=4)
    assert any("4 tracked book(s) stale" in p for p in assess(stale, s, NOW).problems)


def test_ws_off_expects_polling_job_not_feed() -> None:
    s = Settings(ws_enabled=False)
    assert "sync-orderbooks" in expected_jobs(s)
    h = assess(snapshot(s, ws_feed=None), s, NOW)
    assert h.ok, h.problems
