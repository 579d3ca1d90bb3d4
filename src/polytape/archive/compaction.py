"""Background upkeep: merge each closed hour into one file, and drop hours past retention.

An hour is closed once its end is ``grace_seconds`` in the past (late rows that still
arrive land in a new file and the hour is merged again). The merged file is sorted by
token then arrival (``seq``), so a token's rows sit together and a replay reads few row
groups; it is written aside, renamed, and names the files it replaces in its footer
(readers skip those) before they are removed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from polytape.archive.schema import (
    COMPACTED_PREFIX,
    HOUR_US,
    SCHEMAS,
    SORT_KEYS,
    SOURCES_KEY,
    STORED_TYPES,
    TRADES,
    dedupe_trades,
    live_files,
    new_name,
    partitions,
    write_atomic,
)

log = structlog.get_logger("polytape.archive")

STRAY_TMP_SECONDS = 3600  # a dot-file this old is a leftover of a killed writer


@dataclass
class CompactionResult:
    """What one pass did."""

    hours_compacted: int = 0
    files_merged: int = 0
    hours_dropped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def compact(root: Path, now_us: int, *, grace_seconds: float = 120.0) -> CompactionResult:
    """Merge every closed hour that has more than one file (or an uncompacted one)."""
    result = CompactionResult()
    for data_type in STORED_TYPES:
        for hour, folder in list(partitions(root, data_type)):
            _remove_stray_tmp(folder)
            if (hour + 1) * HOUR_US + grace_seconds * 1e6 > now_us:
                continue
            files = live_files(folder)
            if not files or (len(files) == 1 and files[0].name.startswith(COMPACTED_PREFIX)):
                continue
            compact_partition(folder, data_type, files, result)
    return result


def compact_partition(folder: Path, data_type: str, files: list[Path], result: CompactionResult) -> None:
    """Merge ``files`` of one partition into one sorted ``hour-*.parquet``."""
    schema = SCHEMAS[data_type]
    tables = [pq.read_table(p, schema=schema) for p in files]
    merged = pa.concat_tables(tables).sort_by(SORT_KEYS[data_type])
    if data_type == TRADES:
        merged = dedupe_trades(merged)
    before = sum(p.stat().st_size for p in files)
    sources = ",".join(p.name for p in files).encode()
    after = write_atomic(
        merged, folder, new_name(COMPACTED_PREFIX.rstrip("-")), data_type, {SOURCES_KEY: sources}
    )
    for p in files:
        p.unlink(missing_ok=True)
    result.hours_compacted += 1
    result.files_merged += len(files)
    result.bytes_before += before
    result.bytes_after += after


def drop_expired(root: Path, now_us: int, retention_days: float | None) -> int:
    """Remove hours that ended more than ``retention_days`` ago; returns how many."""
    if retention_days is None:
        return 0
    limit = now_us - int(retention_days * 86_400 * 1e6)
    dropped = 0
    for data_type in STORED_TYPES:
        for hour, folder in list(partitions(root, data_type)):
            if (hour + 1) * HOUR_US <= limit:
                shutil.rmtree(folder, ignore_errors=True)
                dropped += 1
                day = folder.parent
                if day.is_dir() and not any(day.iterdir()):
                    day.rmdir()
    return dropped


def _remove_stray_tmp(folder: Path) -> None:
    cutoff = time.time() - STRAY_TMP_SECONDS
    for tmp in folder.glob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            continue
