"""``polytape export``: archive data in Tardis's CSV formats, or Parquet.

CSV follows Tardis's documented downloadable CSV files: comma-separated, LF, a header
row, µs timestamps, ``exchange`` = ``polymarket``, ``symbol`` = the token id, ``side``
``bid``/``ask`` on book rows and ``buy``/``sell`` on trades, empty fields for missing
levels. An output path ending in ``.gz`` is gzipped. Parquet keeps every archive
column (``incremental_book_L2``, ``trades``) or the CSV columns (derived types).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from polytape.archive.derive import DERIVED, EXCHANGE, derived_table
from polytape.archive.reader import read_table
from polytape.archive.schema import L2, TRADES

ARCHIVE_TYPES = (L2, "book_snapshot_25", "book_snapshot_5", "quotes", TRADES)
L2_CSV = ("exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount")
TRADES_CSV = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")


def archive_table(
    root: Path,
    data_type: str,
    since: int | None,
    until: int | None,
    tokens: Sequence[str] | None = None,
    markets: Sequence[str] | None = None,
    *,
    tardis: bool,
) -> Any:
    """The rows to export; ``tardis`` picks Tardis's CSV columns."""
    if data_type in DERIVED:
        if markets:
            found = read_table(root, L2, since, until, markets=markets).column("token_id")
            tokens = sorted(set(tokens or []) | set(found.to_pylist()))
            if not tokens:
                return derived_table(root, data_type, since, since, ["\x00"])  # empty, right columns
        return derived_table(root, data_type, since, until, tokens)
    if data_type not in (L2, TRADES):
        raise ValueError(f"unknown archive data type {data_type!r}")
    table = read_table(root, data_type, since, until, tokens, markets)
    if not tardis:
        return table
    n = table.num_rows
    cols = {
        "exchange": pa.array([EXCHANGE] * n, pa.string()),
        "symbol": table.column("token_id"),
        "timestamp": table.column("timestamp"),
        "local_timestamp": table.column("local_timestamp"),
    }
    if data_type == L2:
        cols.update(
            is_snapshot=table.column("is_snapshot"),
            side=table.column("side"),
            price=table.column("price"),
            amount=table.column("amount"),
        )
        return pa.table(cols).select(list(L2_CSV))
    side = pc.utf8_lower(table.column("side"))
    cols.update(id=table.column("id"), side=side, price=table.column("price"), amount=table.column("amount"))
    return pa.table(cols).select(list(TRADES_CSV))


def write_csv(table: Any, out: Path) -> None:
    """Tardis-style CSV (no quoting, ``true``/``false``, empty for null); ``.gz`` gzips."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    sink: Any = pa.OSFile(str(tmp), "wb")
    if out.name.endswith(".gz"):
        sink = pa.CompressedOutputStream(sink, "gzip")
    try:
        sink.write((",".join(table.column_names) + "\n").encode())  # Arrow would quote the names
        if table.num_rows:
            pacsv.write_csv(table, sink, write_options=options)
    finally:
        sink.close()
    tmp.replace(out)


def write_parquet(table: Any, out: Path) -> None:
    """zstd Parquet, written aside then renamed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(out)


def export(
    root: Path,
    data_type: str,
    since: int | None,
    until: int | None,
    out: Path,
    *,
    fmt: str = "csv",
    tokens: Sequence[str] | None = None,
    markets: Sequence[str] | None = None,
) -> int:
    """Write one archive data type to ``out``; returns the row count."""
    table = archive_table(root, data_type, since, until, tokens, markets, tardis=fmt == "csv")
    if fmt == "csv":
        write_csv(table, out)
    elif fmt == "parquet":
        write_parquet(table, out)
    else:
        raise ValueError(f"unknown format {fmt!r} (csv or parquet)")
    return int(table.num_rows)


DB_TYPES = ("open_interest", "signals")


def db_table(data_type: str, rows: list[dict[str, Any]]) -> Any:
    """Database rows (``read_open_interest``/``read_signals``) in the export's columns."""
    import json

    from polytape.archive.timeparse import datetime_us

    if data_type == "open_interest":
        return pa.table(
            {
                "exchange": pa.array([EXCHANGE] * len(rows), pa.string()),
                "symbol": pa.array([r["condition_id"] for r in rows], pa.string()),
                "timestamp": pa.array([datetime_us(r["ts"]) for r in rows], pa.int64()),
                "open_interest": pa.array([_float(r["open_interest"]) for r in rows], pa.float64()),
            }
        )
    if data_type == "signals":
        return pa.table(
            {
                "exchange": pa.array([EXCHANGE] * len(rows), pa.string()),
                "symbol": pa.array([r["token_id"] or r["condition_id"] or "" for r in rows], pa.string()),
                "timestamp": pa.array([datetime_us(r["detected_at"]) for r in rows], pa.int64()),
                "signal_type": pa.array([r["signal_type"] for r in rows], pa.string()),
                "condition_id": pa.array([r["condition_id"] or "" for r in rows], pa.string()),
                "token_id": pa.array([r["token_id"] or "" for r in rows], pa.string()),
                "score": pa.array([_float(r["score"]) for r in rows], pa.float64()),
                "payload": pa.array([json.dumps(r["payload"], sort_keys=True) for r in rows], pa.string()),
            }
        )
    raise ValueError(f"unknown database data type {data_type!r}")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def write_table(table: Any, out: Path, fmt: str) -> None:
    """CSV (Tardis style) or Parquet, by ``fmt``."""
    if fmt == "csv":
        write_csv(table, out)
    elif fmt == "parquet":
        write_parquet(table, out)
    else:
        raise ValueError(f"unknown format {fmt!r} (csv or parquet)")
