"""The order-book archive: Hive-partitioned Parquet of every book event, trade and gap.

``polytape.archive.open(dir)`` is the read API for notebooks (one method per data type,
each a ``pyarrow.Table``, plus ``book_at``). :class:`BookArchive` is the running
component the feed records into; :class:`ArchiveWriter` the writer and gap ledger under it.
"""

from __future__ import annotations

from pathlib import Path

from polytape.archive.reader import Archive, BookAt, book_at
from polytape.archive.service import BookArchive
from polytape.archive.writer import ArchiveWriter


def open(root: Path | str) -> Archive:
    """Open the archive at ``root`` for reading."""
    return Archive(root)


__all__ = ["Archive", "ArchiveWriter", "BookArchive", "BookAt", "book_at", "open"]
