"""``polytape status``: is the recorder healthy, at a glance (exit 0 healthy, 1 not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytape.config import Settings
from polytape.jobs.registry import SCHEDULED_JOBS
from polytape.redact import redact_urls

HEARTBEAT_STALE = timedelta(seconds=30)
LATE_FACTOR = 2.0  # a job is late when its last run is older than this many cadences (+1 min)


@dataclass
class JobLine:
    name: str
    status: str
    age: timedelta | None
    cadence: float
    rows: int | None
    error: str | None
    late: bool


@dataclass
class Health:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    jobs: list[JobLine] = field(default_factory=list)

    def bad(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def _parse(ts: Any) -> datetime | None:
    if not ts:
        return None
    when = datetime.fromisoformat(str(ts))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def expected_jobs(settings: Settings) -> list[str]:
    names = list(SCHEDULED_JOBS)
    if not settings.ws_enabled:
        names.append("sync-orderbooks")
    return names


def assess(snapshot: dict[str, Any], settings: Settings, now: datetime) -> Health:
    """Pure judgement of a status snapshot."""
    health = Health()
    runs = {r["job_name"]: r for r in snapshot["runs"]}
    for name in expected_jobs(settings):
        cadence = settings.cadence(name)
        run = runs.get(name)
        if run is None:
            health.jobs.append(JobLine(name, "never", None, cadence, None, None, True))
            health.bad(f"{name} has never run")
            continue
        ref = run["finished_at"] or run["started_at"]
        age = now - ref
        late = age > timedelta(seconds=cadence * LATE_FACTOR + 60)
        line = JobLine(name, run["status"], age, cadence, run["rows_written"], run["error"], late)
        health.jobs.append(line)
        if run["status"] == "error":
            health.bad(f"{name} failed: {(run['error'] or '')[:120]}")
        if late:
            health.bad(f"{name} is late: last run {_fmt_age(age)} ago, cadence {cadence:.0f}s")
    runner = snapshot.get("runner") or {}
    beat = _parse(runner.get("updated_at"))
    if beat is None or runner.get("stopped_at") or now - beat > HEARTBEAT_STALE:
        health.bad("polytape run is not running (no fresh heartbeat)")
    if settings.ws_enabled:
        feed = snapshot.get("ws_feed") or {}
        fbeat = _parse(feed.get("updated_at"))
        if fbeat is None or now - fbeat > HEARTBEAT_STALE:
            health.bad("WebSocket feed is not reporting")
        elif feed.get("connections", 0) == 0 and feed.get("tokens_subscribed", 0) > 0:
            health.bad("WebSocket feed has no open connection")
        last_msg = _parse(feed.get("last_message_at"))
        if (
            fbeat is not None
            and last_msg is not None
            and now - last_msg > timedelta(seconds=settings.ws_silence_timeout_seconds * 2)
        ):
            health.bad(f"WebSocket feed silent for {_fmt_age(now - last_msg)}")
    if snapshot.get("stale_books"):
        health.bad(
            f"{snapshot['stale_books']} tracked book(s) stale for over {settings.book_stale_seconds:.0f}s"
        )
    return health


def _fmt_age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    s = int(age.total_seconds())
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


STATUS_STYLE = {"ok": "green", "partial": "yellow", "error": "red", "running": "cyan", "never": "red"}


def render(health: Health, snapshot: dict[str, Any], console: Console) -> None:
    table = Table(title="polytape jobs", title_justify="left")
    for col in ("job", "last run", "age", "cadence", "rows", "error"):
        table.add_column(col)
    for j in health.jobs:
        style = STATUS_STYLE.get(j.status, "white")
        age = f"[red]{_fmt_age(j.age)} LATE[/]" if j.late and j.age else _fmt_age(j.age)
        table.add_row(
            j.name, f"[{style}]{j.status}[/]", age, f"{j.cadence:.0f}s",
            "-" if j.rows is None else str(j.rows), (j.error or "")[:60],
        )  # fmt: skip
    console.print(table)
    feed = snapshot.get("ws_feed") or {}
    if feed:
        ft = Table(title="WebSocket feed", title_justify="left", show_header=False)
        for key in (
            "connections", "tokens_subscribed", "messages_per_s", "stale_books", "reconnects_1h",
            "resyncs_1h", "hash_mismatches_1h", "reconnects", "resyncs", "hash_mismatches", "last_message_at",
        ):  # fmt: skip
            if key in feed:
                ft.add_row(key, str(feed[key]))
        console.print(ft)
    workers = snapshot.get("workers") or []
    if workers:
        wt = Table(title="workers", title_justify="left")
        for col in ("worker", "host", "pid", "tokens", "heartbeat"):
            wt.add_column(col)
        for w in workers:
            beat = f"{max(0.0, w['heartbeat_age_s']):.0f}s ago" + ("" if w["alive"] else " [red]DEAD[/]")
            if w["tokens"] < 0:
                tokens = "- (feed off)"
            else:
                tokens = str(w["tokens"]) if w["alive"] else f"0 (had {w['tokens']})"
            wt.add_row(w["worker_id"], w["host"], str(w["pid"]), tokens, beat)
        console.print(wt)
    console.print(
        f"trades {snapshot['trades']} (newest {snapshot['newest_trade'] or '-'}), "
        f"tracked markets {snapshot['tracked_markets']}, books {snapshot['books']} "
        f"({snapshot['stale_books']} stale), signals last hour {snapshot['signals_recent']}",
        highlight=False,
    )
    archive = snapshot.get("archive")
    if archive:
        console.print(archive_line(archive), highlight=False)
    if snapshot["rejected_recent"]:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(snapshot["rejected_recent"].items()))
        console.print(f"[yellow]rejected payloads in the last hour:[/] {rej}", highlight=False)
    _render_alerts(snapshot.get("alerts") or [], console)
    if health.ok:
        console.print("[bold green]healthy[/]")
    else:
        console.print("[bold red]unhealthy:[/]")
        for p in health.problems:
            console.print(f"  - {p}", highlight=False)


def archive_line(archive: dict[str, Any]) -> str:
    """The archive's line of ``polytape status``."""
    if not archive.get("exists"):
        return f"archive {archive['dir']}: nothing recorded yet"
    newest = archive["newest_flush_us"]
    flushed = datetime.fromtimestamp(newest / 1e6, UTC).isoformat(timespec="seconds") if newest else "-"
    return (
        f"archive {archive['dir']}: {archive['bytes'] / 1e6:.1f} MB in {archive['files']} files, "
        f"{archive['l2_rows_last_hour']} book rows in the last hour, newest flush {flushed}, "
        f"{archive['open_gaps']} open gap(s)"
    )


def _render_alerts(lines: list[dict[str, Any]], console: Console) -> None:
    """The delivery log of the last 24 h, one line per alert channel."""
    if not lines:
        return
    table = Table(title="alerts (last 24 h)", title_justify="left")
    for col in ("channel", "sent", "failed", "held", "stale", "last"):
        table.add_column(col)
    for line in lines:
        failed = line.get("failed", 0)
        last = line.get("last")
        table.add_row(
            escape(line["channel"]),
            str(line.get("sent", 0)),
            f"[red]{failed}[/]" if failed else "0",
            str(line.get("held", 0)),
            str(line.get("stale", 0)),
            last.strftime("%Y-%m-%d %H:%M:%S") if isinstance(last, datetime) else "-",
        )
    console.print(table)


@dataclass
class StatusReport:
    """What ``polytape status`` found: the verdict and the snapshot it was judged on.

    ``database_line`` is set (and ``snapshot`` empty) when the database could not be read
    at all: then that line is the whole answer.
    """

    health: Health
    snapshot: dict[str, Any]
    database_line: str | None = None


def status_report(settings: Settings, now: datetime | None = None) -> StatusReport:
    """Read and judge the recorder's state (for the table, ``--json`` or a dashboard)."""
    from polytape.errors import StoreError
    from polytape.store import Store
    from polytape.store.engine import sqlite_file
    from polytape.store.status import status_snapshot

    now = now or datetime.now(UTC)
    path = sqlite_file(settings.database_url)
    if path is not None and not Path(path).exists():
        problem = f"no database at {path} (polytape run or polytape db upgrade creates it)"
        return StatusReport(Health(ok=False, problems=[problem]), {}, f"[bold red]unhealthy:[/] {problem}")
    try:
        # No retries: status answers now, and an unreachable database is itself the answer.
        store = Store.open(settings.database_url, batch_size=settings.db_batch_size, write_retry_seconds=0)
        try:
            snapshot = status_snapshot(
                store,
                now,
                book_stale_before=now - timedelta(seconds=settings.book_stale_seconds),
                since=now - timedelta(hours=1),
                worker_ttl=settings.worker_lease_seconds,
            )
        finally:
            store.close()
    except StoreError as exc:
        reason = "(whether polytape run is working is unknown): " + redact_urls(str(exc))
        health = Health(ok=False, problems=[f"database unreachable {reason}"])
        return StatusReport(health, {}, f"[bold red]unhealthy: database unreachable[/] {reason}")
    if settings.archive_enabled:
        from polytape.archive.report import summary

        snapshot["archive"] = summary(settings.archive_dir, int(now.timestamp() * 1_000_000))
    return StatusReport(assess(snapshot, settings, now), snapshot)


def status_json(report: StatusReport) -> dict[str, Any]:
    """``polytape status --json``: the same health as one JSON-ready object.

    ``verdict`` is ``"healthy"`` or ``"unhealthy"`` (``problems`` says why); ``jobs`` lists
    each expected job's last run; ``feed`` is the WebSocket feed's last report (None
    without one); ``store`` holds the counts under the table; ``archive`` and ``alerts``
    are there when those components report; ``workers`` lists the ``polytape run``
    processes (id, host, pid, tokens, alive, heartbeat).
    """
    health, snapshot = report.health, report.snapshot
    return {
        "verdict": "healthy" if health.ok else "unhealthy",
        "healthy": health.ok,
        "problems": [redact_urls(p) for p in health.problems],
        "jobs": [
            {
                "name": j.name,
                "status": j.status,
                "age_seconds": None if j.age is None else round(j.age.total_seconds(), 3),
                "cadence_seconds": j.cadence,
                "late": j.late,
                "rows": j.rows,
                "error": redact_urls(j.error) if j.error else None,
            }
            for j in health.jobs
        ],
        "feed": snapshot.get("ws_feed") or None,
        "store": {
            key: snapshot.get(key)
            for key in ("trades", "newest_trade", "tracked_markets", "books", "stale_books", "signals_recent")
        }
        | {"rejected_recent": snapshot.get("rejected_recent") or {}},
        "archive": snapshot.get("archive"),
        "alerts": snapshot.get("alerts") or [],
        "workers": snapshot.get("workers") or [],
    }


def show_status(settings: Settings, console: Console) -> int:
    """Print the status table; 0 when healthy, 1 when not."""
    report = status_report(settings)
    if report.database_line is not None:
        console.print(report.database_line, highlight=False, soft_wrap=True)
        return 1
    render(report.health, report.snapshot, console)
    return 0 if report.health.ok else 1
