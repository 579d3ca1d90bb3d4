"""The archive's data types: Arrow schemas, Hive partition paths, atomic Parquet files.

Layout (architecture.md "Data model"): ``<root>/<data type>/date=YYYY-MM-DD/hour=HH/*.parquet``,
zstd-compressed, partitioned by the hour of each row's server time. Flushes add
``<writer>-<first seq>-<nonce>.parquet`` files; compaction replaces a closed hour's files by
one ``hour-<nonce>.parquet``. A file is written under a dot-name beside its final place,
synced, then renamed, so a reader (or DuckDB's ``**/*.parquet`` glob) never sees half of one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

L2 = "incremental_book_L2"
TRADES = "trades"
GAPS = "gaps"
STORED_TYPES = (L2, TRADES, GAPS)
STATE_DIR = "_state"
COMPACTED_PREFIX = "hour-"
SOURCES_KEY = b"polytape:sources"  # footer metadata of a compacted file: the files it replaced
HOUR_US = 3_600_000_000

L2_SCHEMA = pa.schema(
    [
        ("token_id", pa.string()),
        ("condition_id", pa.string()),
        ("timestamp", pa.int64()),
        ("local_timestamp", pa.int64()),
        ("is_snapshot", pa.bool_()),
        ("side", pa.string()),
        ("price", pa.float64()),
        ("amount", pa.float64()),
        ("hash", pa.string()),
        ("verified", pa.bool_()),
        ("connection_id", pa.string()),
        ("seq", pa.int64()),
    ]
)

TRADES_SCHEMA = pa.schema(
    [
        ("token_id", pa.string()),
        ("condition_id", pa.string()),
        ("timestamp", pa.int64()),  # trade time, µs
        ("local_timestamp", pa.int64()),  # when polytape stored or received it, µs
        ("id", pa.string()),  # the trade's dedupe key (WS: the transaction hash, when sent)
        ("side", pa.string()),  # taker side: buy | sell
        ("price", pa.float64()),
        ("amount", pa.float64()),
        ("transaction_hash", pa.string()),
        ("wallet", pa.string()),
        ("outcome", pa.string()),
        ("source", pa.string()),  # data-api, data-api-v2, ws (last_trade_price), ...
        ("seq", pa.int64()),
    ]
)

GAPS_SCHEMA = pa.schema(
    [
        ("token_id", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("reason", pa.string()),
        ("healed_by", pa.int64()),  # server time of the snapshot that closed it (null: none)
        ("seq", pa.int64()),
    ]
)

SCHEMAS: dict[str, Any] = {L2: L2_SCHEMA, TRADES: TRADES_SCHEMA, GAPS: GAPS_SCHEMA}
TIME_COLUMN = {L2: "timestamp", TRADES: "timestamp", GAPS: "start"}
SORT_KEYS = {
    # by market then arrival: a market's two mirrored books sit together (they compress
    # together) and a replay reads only the row groups of its market
    L2: [("condition_id", "ascending"), ("seq", "ascending")],
    TRADES: [("token_id", "ascending"), ("timestamp", "ascending"), ("seq", "ascending")],
    GAPS: [("token_id", "ascending"), ("start", "ascending"), ("seq", "ascending")],
}
_DELTA_COLUMNS = {
    L2: ["timestamp", "local_timestamp", "seq"],
    TRADES: ["timestamp", "local_timestamp", "seq"],
    GAPS: ["start", "end", "seq", "healed_by"],
}


def hour_of(us: int) -> int:
    """The hour number (since the epoch) a time in µs falls in."""
    return us // HOUR_US


def partition_dir(root: Path, data_type: str, hour: int) -> Path:
    """``<root>/<type>/date=YYYY-MM-DD/hour=HH`` of an hour number."""
    when = datetime.fromtimestamp(hour * 3600, UTC)
    return root / data_type / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"


def parse_partition(path: Path) -> int | None:
    """The hour number of a partition folder (None when it is not one)."""
    try:
        date = path.parent.name.removeprefix("date=")
        hh = int(path.name.removeprefix("hour="))
        day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp()) // 3600 + hh


def partitions(root: Path, data_type: str) -> Iterator[tuple[int, Path]]:
    """Every ``(hour, folder)`` of a data type, oldest first."""
    base = root / data_type
    if not base.is_dir():
        return
    found: list[tuple[int, Path]] = []
    for day in base.glob("date=*"):
        for folder in day.glob("hour=*"):
            hour = parse_partition(folder)
            if hour is not None and folder.is_dir():
                found.append((hour, folder))
    yield from sorted(found)


def live_files(folder: Path) -> list[Path]:
    """The Parquet files of a partition a reader should use.

    A compacted file names the flush files it replaced in its footer; those are skipped
    if compaction was interrupted between its rename and their removal.
    """
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    replaced: set[str] = set()
    for path in files:
        if path.name.startswith(COMPACTED_PREFIX):
            try:
                meta = pq.read_schema(path).metadata or {}
            except (OSError, pa.ArrowInvalid):
                continue
            replaced.update(meta.get(SOURCES_KEY, b"").decode().split(","))
    return [p for p in files if p.name not in replaced]


def new_name(prefix: str) -> str:
    """A file name no other writer will pick."""
    return f"{prefix}-{secrets.token_hex(4)}.parquet"


def write_atomic(
    table: Any,
    folder: Path,
    name: str,
    data_type: str,
    metadata: dict[bytes, bytes] | None = None,
    *,
    level: int = 9,
) -> int:
    """Write ``table`` as ``folder/name`` atomically (dot-file, fsync, rename); returns its bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    delta = _DELTA_COLUMNS[data_type]
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=level,
        # ids repeat (dictionary), hashes rarely do (plain compresses them better)
        use_dictionary=[c for c in table.column_names if c not in delta and c != "hash"],
        column_encoding=dict.fromkeys(delta, "DELTA_BINARY_PACKED"),
        row_group_size=64 * 1024,
        write_statistics=True,
    )
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    final = folder / name
    os.replace(tmp, final)
    _sync_dir(folder)
    return final.stat().st_size


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dedupe_trades(table: Any) -> Any:
    """Drop repeated trades (same non-empty ``id``), keeping the first: polls re-read trades."""
    ids = table.column("id").to_pylist()
    seen: set[str] = set()
    keep = []
    for i, key in enumerate(ids):
        if key:
            if key in seen:
                continue
            seen.add(key)
        keep.append(i)
    return table if len(keep) == len(ids) else table.take(keep)


def us_to_iso(us: int | None) -> str:
    """µs since the epoch → ISO 8601 UTC text ('' for None)."""
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")
