"""``polytape signals tail`` and ``polytape signals list``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytape.app import open_store
from polytape.backfill import parse_since
from polytape.config import Settings
from polytape.signals.format import COLOURS, describe
from polytape.signals.model import SIGNAL_TYPES
from polytape.store import signals as sstore

EXIT_OK, EXIT_USAGE = 0, 2


def _bad_types(console: Console, types: Sequence[str]) -> bool:
    unknown = [t for t in types if t not in SIGNAL_TYPES]
    if unknown:
        known = ", ".join(SIGNAL_TYPES)
        console.print(f"[bold red]error:[/] unknown signal type(s) {', '.join(unknown)}; types: {known}")
    return bool(unknown)


def _line(row: dict[str, Any]) -> str:
    colour = COLOURS.get(row["signal_type"], "white")
    when = row["detected_at"].strftime("%Y-%m-%d %H:%M:%S")
    return f"[dim]{when}[/] [{colour}]{escape(describe(row))}[/]"


def tail(
    settings: Settings,
    console: Console,
    *,
    types: list[str],
    markets: list[str],
    poll_seconds: float = 1.0,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Print new signals as they are written, coloured by type, until Ctrl-C (exit 0)."""
    if _bad_types(console, types):
        return EXIT_USAGE
    store = open_store(settings)
    try:
        last_id = sstore.max_signal_id(store)
        console.print(f"[dim]following new signals (Ctrl-C to stop); newest id {last_id}[/]")
        while stop is None or not stop():
            rows = sstore.signals_after_id(store, last_id, types, markets)
            for row in rows:
                console.print(_line(row), highlight=False, soft_wrap=True)
                last_id = row["id"]
            if not rows:
                time.sleep(poll_seconds)  # polling cadence, not a correctness wait
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return EXIT_OK


def list_signals(
    settings: Settings, console: Console, *, since: str, types: list[str], markets: list[str]
) -> int:
    """A table of the signals detected since ``since`` (``24h``, ``7d``, a date)."""
    if _bad_types(console, types):
        return EXIT_USAGE
    start = parse_since(since, datetime.now(UTC))
    store = open_store(settings)
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
