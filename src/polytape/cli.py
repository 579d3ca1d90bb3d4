"""The ``polytape`` command line (architecture.md "CLI")."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from polytape.config import Settings, load_settings
from polytape.errors import ConfigError, PolytapeError
from polytape.logs import configure_logging
from polytape.redact import redact_urls

app = typer.Typer(
    help="Record Polymarket's public market data into your own database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
backfill_app = typer.Typer(help="Offline, paced, resumable history loads.", no_args_is_help=True)
track_app = typer.Typer(help="Manual overrides of the tracked universe.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
signals_app = typer.Typer(help="Read the signal engine's output.", no_args_is_help=True)
replay_app = typer.Typer(help="Rebuild the past from the archive.", no_args_is_help=True)
app.add_typer(backfill_app, name="backfill")
app.add_typer(track_app, name="track")
app.add_typer(db_app, name="db")
app.add_typer(signals_app, name="signals")
app.add_typer(replay_app, name="replay")

out = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

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


class _State:
    config_file: Path | None = None
    overrides: ClassVar[dict[str, Any]] = {}


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


DbOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides POLYTAPE_DATABASE_URL.", show_default=False)
]


def _db(url: str | None) -> None:
    """A ``--database-url`` given after the command name counts like one given before it."""
    if url:
        _State.overrides["database_url"] = url


def _run_code(result: Any) -> NoReturn:
    raise typer.Exit(int(result or 0))


@app.callback()
def main_options(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file (default ./polytape.toml).")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Overrides POLYTAPE_DATABASE_URL.")
    ] = None,
) -> None:
    """polytape: Polymarket market data, fresh and complete, in your own database."""
    _State.config_file = config
    _State.overrides = {"database_url": database_url}


@app.command()
def run(
    simulated: Annotated[
        bool, typer.Option("--simulated", help="Run against the built-in simulator (offline demo).")
    ] = False,
    database_url: DbOption = None,
    web: Annotated[
        bool, typer.Option("--web", help="Also serve the dashboard (POLYTAPE_WEB_HOST/_PORT).")
    ] = False,
) -> None:
    """Migrate, then run every job on its schedule plus the WebSocket feed until SIGINT/SIGTERM."""
    _db(database_url)
    s = settings()
    from polytape.runner import run_forever

    _run_code(run_forever(s, simulated=simulated, web=web))


@app.command("web")
def web_command(
    database_url: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Overrides POLYTAPE_WEB_HOST.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Overrides POLYTAPE_WEB_PORT.", show_default=False)] = None,
) -> None:
    """Serve the dashboard and its JSON API (read-only) until Ctrl-C."""
    _db(database_url)
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
    database_url: DbOption = None,
) -> None:
    """Run one job once and exit (exit 1 if it ended in error)."""
    _db(database_url)
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
    from polytape.backfill.trades import backfill_trades as run_backfill

    _run_code(run_backfill(s, since=since, until=until, min_usd=min_usd, markets=market or []))


@backfill_app.command("markets")
def backfill_markets(
    closed: Annotated[
        bool, typer.Option("--closed/--open", help="Closed (historical) or open events.")
    ] = True,
    since: Annotated[str | None, typer.Option(help="Only events ending after this (30d or a date).")] = None,
) -> None:
    """Page Gamma events historically with pacing and a progress bar; resumable."""
    s = settings()
    from polytape.backfill.markets import backfill_markets as run_backfill

    _run_code(run_backfill(s, closed=closed, since=since))


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


@track_app.command("remove")
def track_remove(condition_ids: Annotated[list[str], typer.Argument(help="Condition ids (0x…).")]) -> None:
    """Drop manual overrides (auto-selected markets come back on the next refresh if still liquid)."""
    from polytape.app import open_store
    from polytape.store.universe import remove_manual

    store = open_store(settings())
    n = remove_manual(store, condition_ids)
    out.print(f"removed {n} manual override(s)")


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
def status(database_url: DbOption = None) -> None:
    """Jobs, their last runs and lag, and the WebSocket feed: exit 0 when healthy, 1 when not."""
    _db(database_url)
    s = settings()
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
    from polytape.signals.cli import tail

    _run_code(tail(s, out, types=signal_type or [], markets=market or []))


@signals_app.command("list")
def signals_list(
    since: Annotated[str, typer.Option(help="How far back: 1h, 7d, or a date.")] = "24h",
    signal_type: Annotated[list[str] | None, typer.Option("--type", help="Only these signal types.")] = None,
    market: Annotated[list[str] | None, typer.Option(help="Only these condition ids.")] = None,
) -> None:
    """List recorded signals."""
    s = settings()
    from polytape.signals.cli import list_signals

    _run_code(list_signals(s, out, since=since, types=signal_type or [], markets=market or []))


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


def main() -> None:
    """Console-script entry point: typed errors become one line and an exit code."""
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
        sys.exit(130)
