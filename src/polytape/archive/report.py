"""Summaries of the archive: ``polytape coverage`` and the ``status`` section.

Coverage of a token over a window is the share of the window, from the token's first
archived row (or the window's start, if later), that no gap covers. Per-token first and
last rows come from DuckDB over the Parquet files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from polytape.archive.reader import files_for, open_gaps, read_table, writer_states
from polytape.archive.schema import GAPS, HOUR_US, L2, STATE_DIR


@dataclass
class TokenCoverage:
    """One token's coverage over a window (µs)."""

    token_id: str
    first: int
    last: int
    rows: int
    window: int  # µs of the window the token could be covered in
    missing: int  # µs of it inside gaps
    gaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Covered share of the window, 0..1."""
        return 1.0 if self.window <= 0 else max(0.0, 1.0 - self.missing / self.window)


def coverage(root: Path, since: int, until: int, tokens: list[str] | None = None) -> list[TokenCoverage]:
    """Per token: rows, first and last row, covered share of ``[since, until)``, its gaps."""
    files = files_for(root, L2, since, until)
    seen: dict[str, tuple[int, int, int]] = {}
    if files:
        where = "WHERE timestamp >= ? AND timestamp < ?"
        params: list[Any] = [[str(p) for p in files], since, until]
        if tokens:
            where += " AND token_id IN (SELECT unnest(?))"
            params.append(tokens)
        con = duckdb.connect()
        try:
            result = con.execute(
                "SELECT token_id, min(timestamp), max(timestamp), count(*) "
                f"FROM read_parquet(?) {where} GROUP BY token_id",
                params,
            ).fetchall()
        finally:
            con.close()
        seen = {str(t): (int(a), int(b), int(n)) for t, a, b, n in result}
    gap_rows = read_table(root, GAPS, since, until, tokens).to_pylist()
    gap_rows += [g for g in open_gaps(root) if g["start"] < until and (not tokens or g["token_id"] in tokens)]
    by_token: dict[str, list[dict[str, Any]]] = {}
    for g in gap_rows:
        by_token.setdefault(g["token_id"], []).append(g)
    out = []
    for token_id in sorted(set(seen) | set(by_token) | set(tokens or [])):
        first, last, rows = seen.get(token_id, (until, until, 0))
        gaps = sorted(by_token.get(token_id, []), key=lambda g: g["start"])
        begin = min([first, *(max(g["start"], since) for g in gaps)])
        window = until - max(since, begin)
        missing = _union_length([(max(g["start"], since), min(g["end"] or until, until)) for g in gaps])
        out.append(TokenCoverage(token_id, first, last, rows, window, missing, gaps))
    return out


def _union_length(spans: list[tuple[int, int]]) -> int:
    total, cur_start, cur_end = 0, None, None
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


def summary(root: Path, now_us: int) -> dict[str, Any]:
    """The ``status`` section: size, rows of the last hour, newest flush, open gaps."""
    if not root.is_dir():
        return {"dir": str(root), "exists": False}
    size = files = 0
    for path in root.rglob("*.parquet"):
        if STATE_DIR not in path.parts:
            size += path.stat().st_size
            files += 1
    recent = files_for(root, L2, now_us - HOUR_US, None)
    rows = 0
    if recent:
        con = duckdb.connect()
        try:
            found = con.execute(
                "SELECT count(*) FROM read_parquet(?) WHERE timestamp >= ?",
                [[str(p) for p in recent], now_us - HOUR_US],
            ).fetchone()
        finally:
            con.close()
        rows = int(found[0]) if found else 0
    states = writer_states(root)
    newest = max((int(s.get("written_at") or 0) for s in states), default=0) or None
    return {
        "dir": str(root),
        "exists": True,
        "bytes": size,
        "files": files,
        "l2_rows_last_hour": rows,
        "newest_flush_us": newest,
        "open_gaps": len(open_gaps(root)),
    }
