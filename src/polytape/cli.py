"""The ``polytape`` command line (architecture.md "CLI")."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from polytape import heap
from polytape.config import Settings, load_settings
from polytape.errors import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BackfillFailed,
    ConfigError,
    PolytapeError,
)
from polytape.logs import configure_logging
from polytape.redact import redact_urls

if TYPE_CHECKING:
    from polytape.store import Store

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides POLYTAPE_DATABASE_URL.", show_default=False)
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default ./polytape.toml).", show_default=False),
]


class _State:
    config_file: Path | None = None
    overrides: ClassVar[dict[str, Any]] = {}


def _with_common_options(fn: F) -> F:
    """``fn`` taking ``--database-url`` and ``--config`` too (after the command name they
    count like before it)."""
    sig = inspect.signature(fn, eval_str=True)
    extra = [
        inspect.Parameter("database_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DbOption),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOption),
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        url, config = kwargs.pop("database_url", None), kwargs.pop("config", None)
        if url:
            _State.overrides["database_url"] = url
        if config is not None:
            _State.config_file = config
        return fn(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class PolytapeTyper(typer.Typer):
    """A Typer whose every command also takes ``--database-url`` and ``--config``.

    Add commands with ``@app.command()`` (or a sub-app made with this class); the test
    ``tests/unit/test_cli.py`` checks every command has both options.
    """

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            register(_with_common_options(fn))
            return fn

        return decorator


app = PolytapeTyper(
    help="Record Polymarket's public market data into your own database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
backfill_app = PolytapeTyper(help="Offline, paced, resumable history loads.", no_args_is_help=True)
track_app = PolytapeTyper(help="Manual overrides of the tracked universe.", no_args_is_help=True)
db_app = PolytapeTyper(help="Database maintenance.", no_args_is_help=True)
signals_app = PolytapeTyper(help="Read the signal engine's output.", no_args_is_help=True)
replay_app = PolytapeTyper(help="Rebuild the past from the archive.", no_args_is_help=True)
app.add_typer(backfill_app, name="backfill")
app.add_typer(track_app, name="track")
app.add_typer(db_app, name="db")
app.add_typer(signals_app, name="signals")
app.add_typer(replay_app, name="replay")

out = Console()
err = Console(stderr=True)

# The names of ``polytape job`` (the registry's keys; tests/unit/test_registry.py keeps them equal,
# spelled out so ``polytape --help`` does not import every job).
JOB_NAMES = (
    "sync-gamma-events",
    "sync-tag-metadata",
    "refresh-universe",
    "sync-open-interest",
    "sync-large-trades",
    "sync-orderbooks",
    "run-signal-engine",
)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {redact_urls(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    """Load settings once per command; a bad one exits 2 with one line."""
    try:
        s = load_settings(_State.config_file, **_State.overrides)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    configure_logging(s.log_format, s.log_level)
    return s


def _run_code(result: Any) -> NoReturn:
    raise typer.Exit(int(result or 0))


@app.callback()
def main_options(config: ConfigOption = None, database_url: DbOption = None) -> None:
    """polytape: Polymarket market data, fresh and complete, in your own database."""
    _State.config_file = config
    _State.overrides = {"database_url": database_url}


@app.command()
def run(
    simulated: Annotated[
        bool, typer.Option("--simulated", help="Run against the built-in simulator (offline demo).")
    ] = False,
    web: Annotated[
        bool, typer.Option("--web", help="Also serve the dashboard (POLYTAPE_WEB_HOST/_PORT).")
    ] = False,
) -> None:
    """Migrate, then run every job on its schedule plus the WebSocket feed until SIGINT/SIGTERM."""
    s = settings()
    from polytape.runner import run_forever

    _run_code(run_forever(s, simulated=simulated, web=web))


@app.command("web")
def web_command(
    host: Annotated[str | None, typer.Option(help="Overrides POLYTAPE_WEB_HOST.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Overrides POLYTAPE_WEB_PORT.", show_default=False)] = None,
) -> None:
    """Serve the dashboard and its JSON API (read-only) until Ctrl-C."""
    if host:
        _State.overrides["web_host"] = host
    if port is not None:
        _State.overrides["web_port"] = port
    s = settings()
    from polytape.web import serve

    _run_code(serve(s))


@app.command("job")
def job(
    name: Annotated[str, typer.Argument(help="One of: " + ", ".join(JOB_NAMES) + ".")],
) -> None:
    """Run one job once and exit (exit 1 if it ended in error)."""
    if name not in JOB_NAMES:
        _fail(f"unknown job {name!r}; jobs: {', '.join(JOB_NAMES)}", EXIT_USAGE)
    s = settings()
    from polytape.app import run_one_job

    result = asyncio.run(run_one_job(s, name))
    colour = {"ok": "green", "partial": "yellow"}.get(result.status, "red")
    out.print(
        f"{name}: [{colour}]{result.status}[/], {result.rows_written} rows"
        + (f", error: {redact_urls(result.error)}" if result.error else ""),
        highlight=False,
    )
    raise typer.Exit(EXIT_FAIL if result.status == "error" else EXIT_OK)


@backfill_app.command("trades")
def backfill_trades(
    since: Annotated[str, typer.Option(help="How far back: 30d, 12h, or a date (2026-10-01).")],
    until: Annotated[str | None, typer.Option(help="End of the window (default: now).")] = None,
    min_usd: Annotated[float | None, typer.Option(help="Store only trades worth at least this.")] = None,
    market: Annotated[list[str] | None, typer.Option(help="Condition id(s) to limit to.")] = None,
) -> None:
    """Page /trades over a window with pacing and a progress bar; resumable."""
    s = settings()
    _run_code(backfill_trades_command(s, since=since, until=until, min_usd=min_usd, markets=market or []))


@backfill_app.command("markets")
def backfill_markets(
    closed: Annotated[
        bool, typer.Option("--closed/--open", help="Closed (historical) or open events.")
    ] = True,
    since: Annotated[str | None, typer.Option(help="Only events ending after this (30d or a date).")] = None,
) -> None:
    """Page Gamma events historically with pacing and a progress bar; resumable."""
    s = settings()
    _run_code(backfill_markets_command(s, closed=closed, since=since))


@track_app.command("add")
def track_add(condition_ids: Annotated[list[str], typer.Argument(help="Condition ids (0x…).")]) -> None:
    """Always track these markets (manual overrides survive universe refreshes)."""
    from polytape.app import open_store
    from polytape.store.universe import add_manual, list_tracked

    s = settings()
    store = open_store(s)
    manual = {r["condition_id"] for r in list_tracked(store) if r["source"] == "manual"}
    total = len(manual | {c.strip() for c in condition_ids if c.strip()})
    if s.universe_mode == "ranked" and total > s.max_tracked_markets:
        _fail(
            f"{total} manual overrides would exceed the universe cap of {s.max_tracked_markets} "
            "(POLYTAPE_MAX_TRACKED_MARKETS); remove some or raise the cap",
            EXIT_FAIL,
        )
    n = add_manual(store, condition_ids)
    out.print(f"tracking {n} market(s) manually")
    _publish_universe(store, s)


@track_app.command("remove")
def track_remove(condition_ids: Annotated[list[str], typer.Argument(help="Condition ids (0x…).")]) -> None:
    """Drop manual overrides (auto-selected markets come back on the next refresh if still liquid)."""
    from polytape.app import open_store
    from polytape.store.universe import remove_manual

    s = settings()
    store = open_store(s)
    n = remove_manual(store, condition_ids)
    out.print(f"removed {n} manual override(s)")
    _publish_universe(store, s)


def _publish_universe(store: Store, s: Settings) -> None:
    """Refresh the universe now, so a running ``polytape run`` follows the change within
    its universe poll rather than at the next scheduled refresh."""
    from polytape.store.universe import Thresholds, refresh_tracked

    change = refresh_tracked(store, Thresholds.from_settings(s), datetime.now(UTC))
    out.print(
        f"universe version {change.version}: {change.markets} market(s), {change.tokens} token(s)"
        + (
            f"; {len(change.tokens_added)} token(s) in, {len(change.tokens_removed)} out"
            if change.changed
            else ""
        )
    )


@track_app.command("list")
def track_list() -> None:
    """Show the tracked universe."""
    from polytape.app import open_store
    from polytape.store.universe import list_tracked

    rows = list_tracked(open_store(settings()))
    table = Table("rank", "condition_id", "source", "score", "question", "selected_at")
    for r in rows:
        table.add_row(
            str(r["rank"] if r["rank"] is not None else "-"),
            r["condition_id"],
            r["source"],
            f"{r['score']:.0f}" if r["score"] is not None else "-",
            (r.get("question") or "")[:60],
            r["selected_at"].strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)
    out.print(f"{len(rows)} market(s) tracked")


@app.command()
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (jobs, feed, verdict).")
    ] = False,
) -> None:
    """Jobs, their last runs and lag, and the WebSocket feed: exit 0 when healthy, 1 when not.

    ``--json`` prints the same health as one JSON object (verdict, problems, jobs, feed).
    """
    s = settings()
    if as_json:
        import json

        from polytape.status import status_json, status_report

        report = status_report(s)
        typer.echo(json.dumps(status_json(report), default=str))
        raise typer.Exit(EXIT_OK if report.health.ok else EXIT_FAIL)
    from polytape.status import show_status

    _run_code(show_status(s, out))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (polytape run does this too)."""
    from polytape.app import open_store

    store = open_store(settings(), migrate=True)
    out.print(f"database at the newest schema ({store.dialect})")


@signals_app.command("tail")
def signals_tail(
    signal_type: Annotated[list[str] | None, typer.Option("--type", help="Only these signal types.")] = None,
    market: Annotated[list[str] | None, typer.Option(help="Only these condition ids.")] = None,
) -> None:
    """Follow new signals live, coloured by type."""
    s = settings()
    _run_code(follow_signals(s, out, types=signal_type or [], markets=market or []))


@signals_app.command("list")
def signals_list(
    since: Annotated[str, typer.Option(help="How far back: 1h, 7d, or a date.")] = "24h",
    signal_type: Annotated[list[str] | None, typer.Option("--type", help="Only these signal types.")] = None,
    market: Annotated[list[str] | None, typer.Option(help="Only these condition ids.")] = None,
) -> None:
    """List recorded signals."""
    s = settings()
    _run_code(show_signals(s, out, since=since, types=signal_type or [], markets=market or []))


@app.command()
def simulate(
    seed: Annotated[int, typer.Option(help="World seed: the same seed gives the same world.")] = 1,
    markets: Annotated[int, typer.Option(help="About this many markets (events hold 1-6).")] = 60,
    faults: Annotated[str, typer.Option(help="Fault profile: none, flaky, throttled or hostile.")] = "none",
    port: Annotated[
        int,
        typer.Option(
            help="Base port: Gamma on P, Data API P+1, CLOB P+2, WebSocket P+3; 0 picks free ports."
        ),
    ] = 0,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    live: Annotated[bool, typer.Option("--live/--static", help="Keep trading and moving books.")] = True,
    live_interval: Annotated[float, typer.Option(help="Seconds between world steps.")] = 0.5,
) -> None:
    """Serve the built-in Polymarket simulator on loopback and print its base URLs."""
    configure_logging("console", "WARNING")
    from polytape.sim import FaultProfile, World, run_simulator

    if markets < 1:
        _fail("--markets must be at least 1", EXIT_USAGE)
    profile = None
    if faults != "none":
        try:
            profile = FaultProfile.named(faults, seed=seed)
        except (KeyError, ValueError):
            _fail(f"unknown fault profile {faults!r}: none, flaky, throttled or hostile", EXIT_USAGE)
    names = ("gamma", "data", "clob", "ws")
    ports = {name: (port + i if port else 0) for i, name in enumerate(names)}
    world = World(seed, n_events=max(1, (markets + 1) // 2))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(host, seed, ports, live, live_interval, profile, world=world))


# ---- the archive: replay, export, coverage ------------------------------------------------


def _archive_dir(s: Settings) -> Path:
    if not s.archive_dir.is_dir():
        _fail(f"no archive at {s.archive_dir} (POLYTAPE_ARCHIVE_DIR)", EXIT_USAGE)
    return s.archive_dir


def _time(text: str, option: str, *, since: bool = False) -> int:
    from polytape.archive.timeparse import parse_since, parse_time
    from polytape.archive.writer import now_us

    try:
        return parse_since(text, now_us()) if since else parse_time(text)
    except ValueError as exc:
        _fail(f"{option}: {exc}", EXIT_USAGE)


def _iso(us: int | None) -> str:
    from polytape.archive.schema import us_to_iso

    return us_to_iso(us) or "-"


@replay_app.command("book")
def replay_book(
    token: Annotated[str, typer.Argument(help="Token id.")],
    at: Annotated[str, typer.Option("--at", help="ISO 8601 or epoch milliseconds (server time).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The book of TOKEN as it stood at a moment, from the archive (exit 1 when unknown)."""
    import json

    from polytape.archive.reader import book_at

    s = settings()
    when = _time(at, "--at")
    book = book_at(_archive_dir(s), token, when)
    if as_json:
        typer.echo(json.dumps(book.as_json()))
        raise typer.Exit(EXIT_OK if book.found else EXIT_FAIL)
    if not book.found:
        _fail(f"the archive holds no book of {token} at {_iso(when)}", EXIT_FAIL)
    state = "verified" if book.verified else "not verified"
    out.print(f"book of {token} at {_iso(when)}", highlight=False)
    out.print(f"server time {_iso(book.timestamp)}, hash {book.hash or '-'} ({state})", highlight=False)
    if book.in_gap:
        out.print(f"[bold yellow]warning:[/] {_iso(when)} lies inside a recorded gap ({book.gap_reason})")
    table = Table("bid size", "bid", "ask", "ask size")
    for i in range(max(len(book.bids), len(book.asks))):
        bp, bs = book.bids[i] if i < len(book.bids) else ("", "")
        ap, az = book.asks[i] if i < len(book.asks) else ("", "")
        table.add_row(str(bs), str(bp), str(ap), str(az))
    out.print(table)


@app.command("export")
def export_data(
    data_type: Annotated[
        str,
        typer.Argument(
            help="incremental_book_L2, book_snapshot_25, book_snapshot_5, "
            "quotes, trades, open_interest or signals."
        ),
    ],
    since: Annotated[str, typer.Option(help="ISO 8601, epoch ms, or a span back from now (30m, 24h, 7d).")],
    out_path: Annotated[Path, typer.Option("--out", help="Output file; a name ending in .gz is gzipped.")],
    until: Annotated[str | None, typer.Option(help="End (exclusive; default now).")] = None,
    token: Annotated[list[str] | None, typer.Option(help="Only these token ids.")] = None,
    market: Annotated[list[str] | None, typer.Option(help="Only these condition ids.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv (Tardis's format) or parquet.")] = "csv",
) -> None:
    """Export archive or database data as Tardis-format CSV or Parquet."""
    from datetime import UTC, datetime

    from polytape.archive.export import ARCHIVE_TYPES, DB_TYPES, db_table, export, write_table
    from polytape.archive.writer import now_us

    if data_type not in (*ARCHIVE_TYPES, *DB_TYPES):
        _fail(f"unknown data type {data_type!r}; one of {', '.join((*ARCHIVE_TYPES, *DB_TYPES))}", EXIT_USAGE)
    if fmt not in ("csv", "parquet"):
        _fail(f"--format must be csv or parquet, not {fmt!r}", EXIT_USAGE)
    s = settings()
    lo = _time(since, "--since", since=True)
    hi = _time(until, "--until") if until else now_us()
    if hi <= lo:
        _fail("--until must be after --since", EXIT_USAGE)
    if data_type in DB_TYPES:
        from polytape.app import open_store
        from polytape.store.exports import read_open_interest, read_signals

        start, end = (datetime.fromtimestamp(v / 1e6, UTC) for v in (lo, hi))
        store = open_store(s)
        try:
            if data_type == "open_interest":
                rows = read_open_interest(store, start, end, market)
            else:
                rows = read_signals(store, start, end, market, token)
        finally:
            store.close()
        table = db_table(data_type, rows)
        write_table(table, out_path, fmt)
        n = table.num_rows
    else:
        n = export(_archive_dir(s), data_type, lo, hi, out_path, fmt=fmt, tokens=token, markets=market)
    out.print(f"{data_type}: {n} rows written to {out_path}", highlight=False)


@app.command("coverage")
def coverage_cmd(
    since: Annotated[str, typer.Option(help="ISO 8601, epoch ms, or a span back from now.")] = "24h",
    until: Annotated[str | None, typer.Option(help="End (default now).")] = None,
    token: Annotated[list[str] | None, typer.Option(help="Only these token ids.")] = None,
) -> None:
    """Per token: the share of time the archive covers, and every gap with its reason."""
    from polytape.archive.report import coverage
    from polytape.archive.writer import now_us

    s = settings()
    lo = _time(since, "--since", since=True)
    hi = _time(until, "--until") if until else now_us()
    rows = coverage(_archive_dir(s), lo, hi, token)
    table = Table("token", "rows", "first", "last", "covered", "gaps")
    for r in rows:
        table.add_row(
            r.token_id,
            str(r.rows),
            _iso(r.first if r.rows else None),
            _iso(r.last if r.rows else None),
            f"{100 * r.share:.2f}%",
            str(len(r.gaps)),
        )
    out.print(table)
    for r in rows:
        for g in r.gaps:
            healed = (
                f"healed by {_iso(g['healed_by'])}"
                if g.get("healed_by")
                else "open"
                if g["end"] is None
                else "-"
            )
            out.print(
                f"{r.token_id}  {_iso(g['start'])} → {_iso(g['end'])}  {g['reason']}  {healed}",
                highlight=False,
            )
    out.print(f"{len(rows)} token(s), {sum(len(r.gaps) for r in rows)} gap(s)", highlight=False)


# ---- presentation: backfills and signals ---------------------------------------------------


def print_error(console: Console, message: str) -> None:
    """The one way an error line looks (secrets in URLs are masked)."""
    console.print(f"[bold red]error:[/] {escape(redact_urls(message))}", highlight=False, soft_wrap=True)


class ConsoleReporter:
    """Draws a backfill's progress (a :class:`polytape.backfill.Reporter`) on a console."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> ConsoleReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def begin(self, total: int | None, done: int) -> None:
        columns: list[ProgressColumn | str] = [
            SpinnerColumn(),
            TextColumn(f"[bold]{self.label}[/]"),
            BarColumn(),
        ]
        if total is None:  # an unknown amount: count what was done
            columns += [TextColumn("{task.completed} events"), TextColumn("{task.fields[stats]}")]
            columns += [TimeElapsedColumn()]
        else:
            columns += [TaskProgressColumn(), TextColumn("{task.fields[stats]}"), TimeElapsedColumn()]
            columns += [TextColumn("ETA"), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=self.console)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total, completed=done, stats="")

    def progress(self, done: int, stats: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, stats=stats)

    def note(self, text: str, *, warning: bool = False) -> None:
        prefix = "[yellow]warning:[/] " if warning else ""
        self.console.print(prefix + escape(text), highlight=False)


def _backfill_outcome(main: Callable[[], Coroutine[Any, Any, str]], console: Console) -> int:
    """Run a backfill to its exit code: its summary (0), its error (1), or Ctrl-C (130)."""
    try:
        summary = asyncio.run(main())
    except BackfillFailed as exc:
        print_error(console, str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        console.print("interrupted: every stored page is kept; run the same command again to resume")
        return EXIT_INTERRUPTED
    console.print(summary, highlight=False)
    return EXIT_OK


def backfill_trades_command(
    s: Settings,
    *,
    since: str,
    until: str | None,
    min_usd: float | None,
    markets: list[str],
    console: Console | None = None,
) -> int:
    """``polytape backfill trades``; returns the exit code (0 done, 1 failed, 2 bad usage, 130)."""
    from polytape.app import job_context
    from polytape.backfill.trades import backfill_window, run_backfill, state_key, stats

    console = console or err
    try:
        window = backfill_window(since, until, min_usd, datetime.now(UTC))
    except ConfigError as exc:
        print_error(console, str(exc))
        return EXIT_USAGE
    key = state_key(since, until, min_usd, markets)

    async def main() -> str:
        async with job_context(s) as ctx:
            with ConsoleReporter(console, "backfill trades") as report:
                position = await run_backfill(
                    ctx, key=key, window=window, min_usd=min_usd, markets=markets, report=report
                )
        return f"backfill trades done: {stats(position)}"

    return _backfill_outcome(main, console)


def backfill_markets_command(
    s: Settings, *, closed: bool, since: str | None, console: Console | None = None
) -> int:
    """``polytape backfill markets``; returns the exit code (0 done, 1 failed, 130).

    A bad ``since`` raises :class:`ConfigError` (exit 2 through :func:`main`).
    """
    from polytape.app import job_context
    from polytape.backfill import parse_since
    from polytape.backfill.markets import run_backfill, stats

    console = console or err
    since_at = parse_since(since, datetime.now(UTC)) if since else None

    async def main() -> str:
        async with job_context(s) as ctx:
            with ConsoleReporter(console, "backfill markets") as report:
                totals = await run_backfill(ctx, closed=closed, since=since, since_at=since_at, report=report)
        return f"backfill markets done: {stats(totals)}"

    return _backfill_outcome(main, console)


def _unknown_signal_types(types: list[str]) -> list[str]:
    from polytape.signals.model import SIGNAL_TYPES

    return [t for t in types if t not in SIGNAL_TYPES]


def _bad_signal_types(console: Console, types: list[str]) -> bool:
    from polytape.signals.model import SIGNAL_TYPES

    unknown = _unknown_signal_types(types)
    if unknown:
        known = ", ".join(SIGNAL_TYPES)
        print_error(console, f"unknown signal type(s) {', '.join(unknown)}; types: {known}")
    return bool(unknown)


def _signal_line(row: dict[str, Any]) -> str:
    from polytape.signals.format import COLOURS, describe

    colour = COLOURS.get(row["signal_type"], "white")
    when = row["detected_at"].strftime("%Y-%m-%d %H:%M:%S")
    return f"[dim]{when}[/] [{colour}]{escape(describe(row))}[/]"


def follow_signals(
    s: Settings,
    console: Console,
    *,
    types: list[str],
    markets: list[str],
    poll_seconds: float = 1.0,
    stop: Callable[[], bool] | None = None,
) -> int:
    """``polytape signals tail``: print new signals as they are written until Ctrl-C (exit 0)."""
    from polytape.app import open_store
    from polytape.store import signals as sstore

    if _bad_signal_types(console, types):
        return EXIT_USAGE
    store = open_store(s)
    try:
        last_id = sstore.max_signal_id(store)
        console.print(f"[dim]following new signals (Ctrl-C to stop); newest id {last_id}[/]")
        while stop is None or not stop():
            rows = sstore.signals_after_id(store, last_id, types, markets)
            for row in rows:
                console.print(_signal_line(row), highlight=False, soft_wrap=True)
                last_id = row["id"]
            if not rows:
                time.sleep(poll_seconds)  # polling cadence, not a correctness wait
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return EXIT_OK


def show_signals(s: Settings, console: Console, *, since: str, types: list[str], markets: list[str]) -> int:
    """``polytape signals list``: a table of the signals detected since ``since``."""
    from polytape.app import open_store
    from polytape.backfill import parse_since
    from polytape.signals.format import COLOURS, describe
    from polytape.store import signals as sstore

    if _bad_signal_types(console, types):
        return EXIT_USAGE
    start = parse_since(since, datetime.now(UTC))
    store = open_store(s)
    try:
        rows = sstore.list_signals(store, start, types, markets)
    finally:
        store.close()
    table = Table("id", "detected_at", "type", "market", "score", "signal")
    for row in rows:
        colour = COLOURS.get(row["signal_type"], "white")
        table.add_row(
            str(row["id"]),
            row["detected_at"].strftime("%Y-%m-%d %H:%M:%S"),
            f"[{colour}]{row['signal_type']}[/]",
            (row["condition_id"] or "-")[:14],
            f"{row['score']:,.2f}" if row["score"] is not None else "-",
            escape(describe(row).split(": ", 1)[-1]),
        )
    console.print(table)
    console.print(f"{len(rows)} signal(s) since {start:%Y-%m-%d %H:%M} UTC")
    return EXIT_OK


def main() -> None:
    """Console-script entry point: typed errors become one line and an exit code."""
    heap.limit_arenas()  # before any thread starts (polytape.heap)
    try:
        app()
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {redact_urls(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except PolytapeError as exc:
        line = redact_urls(f"{type(exc).__name__}: {exc}")
        err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAIL)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
