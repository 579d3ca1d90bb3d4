"""The archive's pure parts: writer, partitions, replay, gap ledger, compaction, exports, times."""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import polytape.archive
from polytape.archive.compaction import compact, drop_expired
from polytape.archive.export import L2_CSV, TRADES_CSV, export
from polytape.archive.reader import book_at, open_gaps
from polytape.archive.report import coverage
from polytape.archive.schema import HOUR_US, L2, live_files, partitions
from polytape.archive.timeparse import parse_since, parse_time
from polytape.archive.writer import ArchiveWriter

T0 = 1_764_000_000_000_000 - 1_764_000_000_000_000 % HOUR_US  # an hour boundary, µs
Book = dict[str, dict[float, float]]


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def random_session(
    w: ArchiveWriter, token: str, rng: random.Random, start: int, n: int, *, step_ms: int = 500
) -> dict[int, Book]:
    """Record a snapshot then ``n`` delta messages; returns the true book after each server time."""
    book: Book = {"bid": {0.40: 10.0, 0.39: 5.0}, "ask": {0.60: 7.0}}
    w.record_snapshot(
        token,
        "C-" + token,
        start,
        start + 3,
        list(book["bid"].items()),
        list(book["ask"].items()),
        "h0",
        True,
        "ws-1",
    )
    truth = {start: {k: dict(v) for k, v in book.items()}}
    ts = start
    for i in range(n):
        ts += rng.randint(0, step_ms) * 1000  # 0: several messages in one millisecond (ties)
        changes = []
        for _ in range(rng.randint(1, 3)):
            side = rng.choice(["bid", "ask"])
            price = round(rng.uniform(0.30, 0.45) if side == "bid" else rng.uniform(0.55, 0.70), 2)
            amount = rng.choice([0.0, round(rng.uniform(1, 500), 2)])
            changes.append((side, price, amount))
            if amount:
                book[side][price] = amount
            else:
                book[side].pop(price, None)
        w.record_changes(token, "C-" + token, ts, ts + 7, changes, f"h{i}", True, "ws-1")
        truth[ts] = {k: dict(v) for k, v in book.items()}
    return truth


def as_book(b: polytape.archive.BookAt) -> Book:
    return {"bid": dict(b.bids), "ask": dict(b.asks)}


def test_layout_columns_and_duckdb(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, clock=Clock(T0))
    random_session(w, "T1", random.Random(1), T0 + 10, 50)
    w.record_snapshot("T2", "C2", T0 + HOUR_US + 5, T0 + HOUR_US + 9, [(0.5, 1.0)], [], "hx", False, "ws-2")
    w.record_trade("T1", "C-T1", T0 + 20, T0 + 30, id="k1", side="BUY", price=0.4, amount=3.0, source="ws")
    w.record_gap("T1", T0 + 1, T0 + 2, "handover")
    w.flush()
    hours = [h for h, _ in partitions(tmp_path, L2)]
    assert hours == [T0 // HOUR_US, T0 // HOUR_US + 1]
    folders = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("hour=*"))
    assert all(f.split("/")[1].startswith("date=") for f in folders)
    assert not list(tmp_path.rglob(".*.tmp"))
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT * FROM read_parquet('{tmp_path}/incremental_book_L2/**/*.parquet', hive_partitioning = true)"
    )
    assert rel.columns[:12] == [
        "token_id",
        "condition_id",
        "timestamp",
        "local_timestamp",
        "is_snapshot",
        "side",
        "price",
        "amount",
        "hash",
        "verified",
        "connection_id",
        "seq",
    ]
    assert [str(t) for t in rel.types[:12]] == [
        "VARCHAR",
        "VARCHAR",
        "BIGINT",
        "BIGINT",
        "BOOLEAN",
        "VARCHAR",
        "DOUBLE",
        "DOUBLE",
        "VARCHAR",
        "BOOLEAN",
        "VARCHAR",
        "BIGINT",
    ]
    seqs = [
        r[0]
        for r in con.sql(f"SELECT seq FROM read_parquet('{tmp_path}/*/**/*.parquet') ORDER BY seq").fetchall()
    ]
    assert len(seqs) == len(set(seqs))
    trades = con.sql(
        f"SELECT side FROM read_parquet('{tmp_path}/trades/**/*.parquet', hive_partitioning = true)"
    )
    assert trades.fetchall() == [("buy",)]
    gaps = con.sql(
        f"SELECT reason FROM read_parquet('{tmp_path}/gaps/**/*.parquet', hive_partitioning = true)"
    )
    assert gaps.fetchall() == [("handover",)]


def test_replay_matches_truth_at_random_moments(tmp_path: Path) -> None:
    clock = Clock(T0)
    w = ArchiveWriter(tmp_path, clock=clock)
    rng = random.Random(7)
    truth = random_session(w, "T1", rng, T0 + 1000, 3000, step_ms=4000)  # crosses an hour boundary
    w.flush()
    times = sorted(truth)
    assert times[-1] > T0 + HOUR_US
    for at in [*rng.sample(times, 60), times[0], times[-1]]:
        got = book_at(tmp_path, "T1", at)
        assert got.found and as_book(got) == truth[at], at
        assert got.timestamp == at and got.verified
    between = times[100] + 1
    assert as_book(book_at(tmp_path, "T1", between)) == truth[max(t for t in times if t <= between)]
    assert not book_at(tmp_path, "T1", T0).found  # before the first snapshot
    assert not book_at(tmp_path, "T9", times[-1]).found


def test_checkpoint_is_a_seek_point_and_not_a_heal(tmp_path: Path) -> None:
    clock = Clock(T0)
    w = ArchiveWriter(tmp_path, clock=clock, checkpoint_seconds=60)
    truth = random_session(w, "T1", random.Random(3), T0 + 10, 200)
    last = max(truth)
    w.open_gap("T1", "hash_mismatch")
    assert w.checkpoint_due("T1", last + 61_000_000)
    book = truth[last]
    w.record_snapshot(
        "T1",
        "C-T1",
        last,
        last + 9,
        list(book["bid"].items()),
        list(book["ask"].items()),
        "h199",
        False,
        "checkpoint",
        heal=False,
    )
    assert "T1" in w.open_gaps  # a checkpoint does not heal
    w.flush()
    assert as_book(book_at(tmp_path, "T1", last)) == book


def test_gap_opens_at_last_verified_message_and_heals(tmp_path: Path) -> None:
    clock = Clock(T0)
    w = ArchiveWriter(tmp_path, clock=clock)
    w.record_snapshot("T1", "C1", T0 + 1_000, T0 + 1_100, [(0.4, 1.0)], [(0.6, 1.0)], "a", True)
    w.record_changes("T1", "C1", T0 + 2_000, T0 + 2_100, [("bid", 0.41, 2.0)], "b", True)
    w.record_changes("T1", "C1", T0 + 3_000, T0 + 3_100, [("bid", 0.42, 2.0)], "c", False)  # mismatch
    w.open_gap("T1", "hash_mismatch")
    w.record_changes("T1", "C1", T0 + 4_000, T0 + 4_100, [("bid", 0.43, 2.0)], "d", False)
    w.flush()
    assert open_gaps(tmp_path) == [
        {"token_id": "T1", "start": T0 + 2_000, "end": None, "reason": "hash_mismatch", "healed_by": None}
    ]
    assert book_at(tmp_path, "T1", T0 + 3_500).in_gap
    w.record_snapshot("T1", "C1", T0 + 5_000, T0 + 5_100, [(0.4, 1.0)], [(0.6, 1.0)], "e", True)
    w.flush()
    assert open_gaps(tmp_path) == []
    gaps = polytape.archive.open(tmp_path).gaps().to_pylist()
    assert [(g["start"], g["end"], g["reason"], g["healed_by"]) for g in gaps] == [
        (T0 + 2_000, T0 + 5_000, "hash_mismatch", T0 + 5_000)
    ]
    inside, after = book_at(tmp_path, "T1", T0 + 3_000), book_at(tmp_path, "T1", T0 + 5_000)
    assert inside.in_gap and inside.gap_reason == "hash_mismatch" and not inside.verified
    assert not after.in_gap and after.verified and after.hash == "e"
    with pytest.raises(ValueError, match="ends before"):
        w.record_gap("T1", 10, 5, "handover")


@pytest.mark.parametrize(("clean", "reason"), [(False, "crash"), (True, "stopped")])
def test_restart_records_the_unflushed_interval_as_a_gap(tmp_path: Path, clean: bool, reason: str) -> None:
    clock = Clock(T0)
    w = ArchiveWriter(tmp_path, clock=clock)
    w.record_snapshot("T1", "C1", T0 + 1_000, T0 + 1_000, [(0.4, 1.0)], [], "a", True)
    w.flush()
    w.record_changes("T1", "C1", T0 + 9_000, T0 + 9_000, [("bid", 0.41, 2.0)], "b", True)  # never flushed
    if clean:
        w.close()
    seq = w.seq
    again = ArchiveWriter(tmp_path, clock=clock)  # a new process on the same directory
    assert again.seq == seq if clean else again.seq < seq
    start = T0 + 9_000 if clean else T0 + 1_000
    assert {t: (g.start, g.reason) for t, g in again.open_gaps.items()} == {"T1": (start, reason)}
    again.record_changes("T2", "C1", T0 + 15_000, T0 + 15_000, [("bid", 0.1, 1.0)])
    again.flush()  # the first flush persists the recovered gap
    assert [(g["token_id"], g["start"], g["reason"]) for g in open_gaps(tmp_path)] == [("T1", start, reason)]
    again.record_snapshot("T1", "C1", T0 + 20_000, T0 + 20_000, [(0.4, 1.0)], [], "c", True)
    again.flush()
    gaps = polytape.archive.open(tmp_path).gaps().to_pylist()
    assert [(g["start"], g["end"], g["reason"]) for g in gaps] == [(start, T0 + 20_000, reason)]
    assert again.seq > seq or not clean


def test_compaction_merges_closed_hours_and_keeps_the_rows(tmp_path: Path) -> None:
    clock = Clock(T0)
    w = ArchiveWriter(tmp_path, clock=clock)
    rng = random.Random(5)
    truth = random_session(w, "T1", rng, T0 + 10, 400, step_ms=5000)
    for i in range(5):  # several flushes: several files per hour
        random_session(w, f"X{i}", rng, T0 + 10 + i * 1000, 30)
        w.flush()
    archive = polytape.archive.open(tmp_path)
    before = archive.incremental_book_L2().to_pylist()
    first_hour = next(iter(partitions(tmp_path, L2)))[1]
    assert len(live_files(first_hour)) > 1
    open_hour = compact(tmp_path, T0 + HOUR_US + 60_000_000)  # hour 0 closed less than the grace ago
    assert open_hour.hours_compacted == 0
    result = compact(tmp_path, T0 + 3 * HOUR_US)
    assert result.hours_compacted >= 1
    for _, folder in partitions(tmp_path, L2):
        files = live_files(folder)
        assert len(files) == 1 and files[0].name.startswith("hour-")
        assert [p.name for p in folder.glob("*.parquet")] == [files[0].name]
    after = archive.incremental_book_L2().to_pylist()
    assert sorted(after, key=lambda r: r["seq"]) == sorted(before, key=lambda r: r["seq"])
    at = rng.choice(sorted(truth))
    assert as_book(book_at(tmp_path, "T1", at)) == truth[at]
    assert compact(tmp_path, T0 + 3 * HOUR_US).hours_compacted == 0  # idempotent


def test_an_interrupted_compaction_never_doubles_rows(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, clock=Clock(T0))
    random_session(w, "T1", random.Random(2), T0 + 10, 50)
    w.flush()
    random_session(w, "T2", random.Random(3), T0 + 10, 50)
    w.flush()
    folder = next(iter(partitions(tmp_path, L2)))[1]
    sources = live_files(folder)
    rows = polytape.archive.open(tmp_path).incremental_book_L2().num_rows
    from polytape.archive.compaction import CompactionResult, compact_partition

    keep = {p: p.read_bytes() for p in sources}
    compact_partition(folder, L2, sources, CompactionResult())
    for p, data in keep.items():  # as if killed between the rename and the removals
        p.write_bytes(data)
    assert polytape.archive.open(tmp_path).incremental_book_L2().num_rows == rows


def test_retention_drops_old_hours(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, clock=Clock(T0))
    random_session(w, "T1", random.Random(2), T0 + 10, 5)
    random_session(w, "T2", random.Random(2), T0 + 3 * 86_400_000_000, 5)
    w.flush()
    assert drop_expired(tmp_path, T0 + 3 * 86_400_000_000, None) == 0
    assert drop_expired(tmp_path, T0 + 3 * 86_400_000_000, 2) == 1
    assert [h for h, _ in partitions(tmp_path, L2)] == [(T0 + 3 * 86_400_000_000) // HOUR_US]


def test_export_csv_is_tardis_format_and_reads_back(tmp_path: Path) -> None:
    root = tmp_path / "a"
    w = ArchiveWriter(root, clock=Clock(T0))
    random_session(w, "T1", random.Random(4), T0 + 10, 100)
    w.record_trade("T1", "C-T1", T0 + 50, T0 + 60, id="k1", side="SELL", price=0.4, amount=3.5, source="ws")
    w.flush()
    n = export(root, L2, T0, T0 + HOUR_US, tmp_path / "l2.csv.gz")
    with gzip.open(tmp_path / "l2.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == L2_CSV and len(rows) == n + 1
    table = polytape.archive.open(root).incremental_book_L2(T0, T0 + HOUR_US).to_pylist()
    back = [(r[1], int(r[2]), int(r[3]), r[4] == "true", r[5], float(r[6]), float(r[7])) for r in rows[1:]]
    assert {r[0] for r in rows[1:]} == {"polymarket"}
    assert back == [
        (
            t["token_id"],
            t["timestamp"],
            t["local_timestamp"],
            t["is_snapshot"],
            t["side"],
            t["price"],
            t["amount"],
        )
        for t in table
    ]
    export(root, "trades", T0, T0 + HOUR_US, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines == [",".join(TRADES_CSV), f"polymarket,T1,{T0 + 50},{T0 + 60},k1,sell,0.4,3.5"]
    export(root, L2, T0, T0 + HOUR_US, tmp_path / "l2.parquet", fmt="parquet")
    assert pq.read_table(tmp_path / "l2.parquet").num_rows == n


def test_derived_snapshots_and_quotes(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, clock=Clock(T0))
    w.record_snapshot("T1", "C1", T0 + 1, T0 + 2, [(0.40, 10.0), (0.39, 5.0)], [(0.60, 7.0)], "a")
    w.record_changes("T1", "C1", T0 + 3, T0 + 4, [("bid", 0.30, 1.0)], "b")  # level 3 of bids
    w.record_changes("T1", "C1", T0 + 5, T0 + 6, [("ask", 0.60, 8.0)], "c")  # best ask amount
    w.record_changes("T1", "C1", T0 + 7, T0 + 8, [("bid", 0.40, 0.0)], "d")  # best bid removed
    w.flush()
    export(tmp_path, "quotes", T0, T0 + 100, tmp_path / "q.csv")
    assert (tmp_path / "q.csv").read_text().splitlines() == [
        "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
        f"polymarket,T1,{T0 + 1},{T0 + 2},7,0.6,0.4,10",
        f"polymarket,T1,{T0 + 5},{T0 + 6},8,0.6,0.4,10",
        f"polymarket,T1,{T0 + 7},{T0 + 8},8,0.6,0.39,5",
    ]
    export(tmp_path, "book_snapshot_5", T0 + 4, T0 + 100, tmp_path / "s.csv")  # starts mid-stream
    lines = (tmp_path / "s.csv").read_text().splitlines()
    head = lines[0].split(",")
    assert head[:8] == [
        "exchange",
        "symbol",
        "timestamp",
        "local_timestamp",
        "asks[0].price",
        "asks[0].amount",
        "bids[0].price",
        "bids[0].amount",
    ]
    assert len(head) == 4 + 5 * 4 and head[-1] == "bids[4].amount"
    assert lines[1].split(",")[:12] == [
        "polymarket",
        "T1",
        str(T0 + 5),
        str(T0 + 6),
        "0.6",
        "8",
        "0.4",
        "10",
        "",
        "",
        "0.39",
        "5",
    ]
    assert len(lines) == 3


def test_coverage_shares_and_gaps(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, clock=Clock(T0))
    w.record_snapshot("T1", "C1", T0, T0, [(0.4, 1.0)], [], "a", True)
    w.record_gap("T1", T0 + 100_000_000, T0 + 200_000_000, "disconnect", T0 + 200_000_000)
    w.record_gap("T1", T0 + 150_000_000, T0 + 250_000_000, "hash_mismatch", T0 + 250_000_000)
    w.record_snapshot("T2", "C1", T0, T0, [(0.4, 1.0)], [], "a", True)
    w.flush()
    rows = {r.token_id: r for r in coverage(tmp_path, T0, T0 + 1_000_000_000)}
    assert rows["T1"].missing == 150_000_000 and rows["T1"].share == pytest.approx(0.85)
    assert rows["T2"].share == 1.0 and rows["T1"].rows == 1


def test_times() -> None:
    assert parse_time("1764338587250") == 1_764_338_587_250_000
    assert parse_time("2026-11-28T14:03:07.25Z") == parse_time("2026-11-28T14:03:07.250+00:00")
    assert parse_time("2026-11-28T14:03:07") == 1_795_874_587_000_000
    now = 1_800_000_000_000_000
    assert parse_since("30m", now) == now - 1_800_000_000
    assert parse_since("24h", now) == now - 86_400_000_000
    assert parse_since("7d", now) == now - 7 * 86_400_000_000
    for bad in ("yesterday", "30x", ""):
        with pytest.raises(ValueError, match="bad time"):
            parse_since(bad, now)


def polytape_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polytape", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_replay_export_coverage(tmp_path: Path) -> None:
    root = tmp_path / "arch"
    w = ArchiveWriter(root, clock=Clock(T0))
    truth = random_session(w, "T1", random.Random(9), T0 + 1000, 100)
    w.close()
    env = {"POLYTAPE_ARCHIVE_DIR": str(root), "POLYTAPE_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}
    at = sorted(truth)[50]
    proc = polytape_cli("replay", "book", "T1", "--at", str(at // 1000), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert set(got) == {"token_id", "timestamp", "hash", "verified", "in_gap", "bids", "asks"}
    ms = at // 1000 * 1000
    want = truth[max(t for t in truth if t <= ms)]
    assert got["bids"] == [[p, s] for p, s in sorted(want["bid"].items(), reverse=True)]
    assert got["asks"] == [[p, s] for p, s in sorted(want["ask"].items())]
    text = polytape_cli("replay", "book", "T1", "--at", "2025-11-24T16:00:00.5Z", env=env)
    assert text.returncode == 0 and "verified" in text.stdout, text.stderr
    bad = polytape_cli("replay", "book", "T1", "--at", "noon", env=env)
    assert bad.returncode == 2 and "bad time" in bad.stderr and "Traceback" not in bad.stderr
    missing = polytape_cli(
        "replay", "book", "T1", "--at", "1", env={**env, "POLYTAPE_ARCHIVE_DIR": str(tmp_path / "x")}
    )
    assert missing.returncode == 2 and "no archive" in missing.stderr
    out = tmp_path / "q.csv.gz"
    proc = polytape_cli(
        "export",
        "quotes",
        "--since",
        str(T0 // 1000),
        "--until",
        str(T0 // 1000 + 3_600_000),
        "--out",
        str(out),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    with gzip.open(out, "rt") as fh:
        assert fh.readline().startswith("exchange,symbol,timestamp,local_timestamp,ask_amount")
    proc = polytape_cli(
        "coverage", "--since", str(T0 // 1000), "--until", str(T0 // 1000 + 3_600_000), env=env
    )
    assert proc.returncode == 0 and "T1" in proc.stdout and "100.00%" in proc.stdout, proc.stdout


def test_handovers_are_gaps_until_the_first_snapshot(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from polytape.archive.service import BookArchive
    from polytape.store.workers import Handover

    archive = BookArchive(tmp_path)
    since = datetime.fromtimestamp((T0 + 1_000_000) / 1e6, UTC)
    archive.record_handovers([Handover("T1", since, "w-old", "worker died")], datetime.now(UTC))
    archive.writer.record_snapshot("T1", "C1", T0 + 5_000_000, T0 + 5_000_000, [(0.4, 1.0)], [], "h", True)
    archive.close()
    gaps = polytape.archive.open(tmp_path).gaps().to_pylist()
    assert [(g["start"], g["end"], g["reason"]) for g in gaps] == [
        (T0 + 1_000_000, T0 + 5_000_000, "handover")
    ]


def test_cli_exports_database_types(tmp_path: Path, sqlite_url: str) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from polytape.store import Store
    from polytape.store.schema import market_metrics_ts, signal_events

    store = Store.open(sqlite_url)
    at = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
    store.write(
        lambda tx: tx.execute(
            sa.insert(market_metrics_ts),
            [
                {"condition_id": "0xc1", "ts": at, "open_interest": 1234.5},
                {"condition_id": "0xc2", "ts": at, "open_interest": 99.0},
            ],
        )
    )
    store.write(
        lambda tx: tx.execute(
            sa.insert(signal_events),
            [
                {
                    "dedupe_key": "k",
                    "signal_type": "large_trade",
                    "condition_id": "0xc1",
                    "token_id": "T1",
                    "detected_at": at,
                    "score": 2.5,
                    "payload": {"usd": 12000},
                },
            ],
        )
    )
    store.close()
    env = {"POLYTAPE_DATABASE_URL": sqlite_url, "POLYTAPE_ARCHIVE_DIR": str(tmp_path / "none")}
    since, until = "2026-11-28T13:00Z", "2026-11-28T15:00Z"
    oi = tmp_path / "oi.csv"
    proc = polytape_cli(
        "export",
        "open_interest",
        "--since",
        since,
        "--until",
        until,
        "--market",
        "0xc1",
        "--out",
        str(oi),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    us = 1_795_874_400_000_000  # 2026-11-28T14:00Z
    assert oi.read_text().splitlines() == [
        "exchange,symbol,timestamp,open_interest",
        f"polymarket,0xc1,{us},1234.5",
    ]
    sig = tmp_path / "s.parquet"
    proc = polytape_cli(
        "export",
        "signals",
        "--since",
        since,
        "--until",
        until,
        "--format",
        "parquet",
        "--out",
        str(sig),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(sig).to_pylist()
    assert [(r["signal_type"], r["symbol"], r["timestamp"], json.loads(r["payload"])) for r in rows] == [
        ("large_trade", "T1", us, {"usd": 12000})
    ]
    bad = polytape_cli("export", "nonsense", "--since", "1h", "--out", str(oi), env=env)
    assert bad.returncode == 2 and "unknown data type" in bad.stderr


def test_a_deferred_check_moves_the_gap_start(tmp_path: Path) -> None:
    from polytape.archive.service import BookArchive

    archive = BookArchive(tmp_path)
    w = archive.writer
    w.record_snapshot("T1", "C1", T0 + 1_000, T0 + 1_000, [(0.4, 1.0)], [], "a", False)
    w.record_changes("T1", "C1", T0 + 5_000, T0 + 5_000, [("bid", 0.41, 2.0)], "b", False)  # check deferred
    archive.verified_at("T1", (T0 + 5_000) // 1000)  # ... and passed later
    archive.open_gap("T1", "hash_mismatch")
    assert w.open_gaps["T1"].start == T0 + 5_000


def test_a_deferred_check_marks_the_checked_message_verified(tmp_path: Path) -> None:
    from polytape.archive.service import BookArchive

    archive = BookArchive(tmp_path)
    w = archive.writer
    w.record_snapshot("T1", "C1", T0 + 1_000, T0 + 1_000, [(0.4, 1.0)], [], "a", False)
    w.record_changes("T1", "C1", T0 + 3_000, T0 + 3_000, [("bid", 0.42, 1.0)], "b", False)
    w.record_changes("T1", "C1", T0 + 5_000, T0 + 5_000, [("bid", 0.41, 2.0)], "c", False)
    archive.verified_at("T1", (T0 + 5_000) // 1000, "wrong")  # another state's hash: nothing marked
    archive.verified_at("T1", (T0 + 5_000) // 1000, "c")  # the newest message's state was checked
    rows = w.detach().l2.table().to_pylist()
    assert [(r["hash"], r["verified"]) for r in rows] == [("a", False), ("b", False), ("c", True)]
    # After a flush the checked message is no longer buffered: nothing to mark, nothing breaks.
    archive.verified_at("T1", (T0 + 5_000) // 1000, "c")


def test_flush_is_due_early_by_the_write_time_so_rows_land_within_the_interval(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, clock=Clock(T0), flush_seconds=10)
    assert not w.flush_due(T0 + 60_000_000)  # nothing buffered
    w.record_changes("T1", "C-T1", T0, T0, [("bid", 0.4, 5.0)])
    assert not w.flush_due(T0 + 9_000_000)
    assert w.flush_due(T0 + 10_000_000)
    assert w.flush_due(T0 + 9_000_000, lead_s=1.5)  # a write takes ~1.5 s: start it now
    assert not w.flush_due(T0 + 4_000_000, lead_s=8.0)  # the lead never exceeds half the interval
    assert w.flush_due(T0 + 5_000_000, lead_s=8.0)


def test_checkpoints_are_capped_per_look_and_the_rest_wait(tmp_path: Path) -> None:
    """Books that came in together fall due together; a look checkpoints at most ``limit``
    of them and the next look takes the others."""
    from datetime import UTC, datetime, timedelta

    from polytape.archive.service import BookArchive
    from polytape.books import OrderBook
    from polytape.normalize.books import BookMsg, Level

    archive = BookArchive(tmp_path, checkpoint_seconds=60)
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    books = []
    for i in range(10):
        book = OrderBook(f"T{i}", "C")
        book.apply_snapshot(
            BookMsg("C", f"T{i}", "1790658661000", [Level("0.4", "1")], [Level("0.6", "1")]), start
        )
        archive.record_book(book, start)
        book.apply_change("BUY", "0.41", "2")  # changed since: a checkpoint will be due
        archive.writer.changed.add(book.token_id)
        books.append(book)
    later = start + timedelta(seconds=61)
    assert archive.checkpoint(books, later, limit=4) == 4
    assert archive.checkpoint(books, later, limit=4) == 4
    assert archive.checkpoint(books, later, limit=4) == 2
    assert archive.checkpoint(books, later, limit=4) == 0
    archive.writer.flush()
    snaps = polytape.archive.open(tmp_path).incremental_book_L2().to_pylist()
    assert (
        len(
            {
                r["token_id"]
                for r in snaps
                if r["is_snapshot"] and r["local_timestamp"] > start.timestamp() * 1e6
            }
        )
        == 10
    )


def test_not_subscribed_gap_spans_joining_to_the_first_newer_snapshot(tmp_path: Path) -> None:
    """Joining the feed opens a ``not_subscribed`` gap; a first snapshot newer than the
    joining closes it as a row, one no newer (a quiet book: nothing missed) leaves none."""
    clock = Clock(T0 + 5_000_000)
    w = ArchiveWriter(tmp_path, clock=clock)
    w.open_gap("QUIET", "not_subscribed")
    w.open_gap("BUSY", "not_subscribed")
    w.record_snapshot("QUIET", "C", T0 + 1_000_000, T0 + 5_100_000, [(0.4, 1.0)], [(0.6, 1.0)], "a", True)
    w.record_snapshot("BUSY", "C", T0 + 7_000_000, T0 + 7_100_000, [(0.4, 1.0)], [(0.6, 1.0)], "b", True)
    w.flush()
    gaps = polytape.archive.open(tmp_path).gaps().to_pylist()
    assert [(g["token_id"], g["start"], g["end"], g["reason"]) for g in gaps] == [
        ("BUSY", T0 + 5_000_000, T0 + 7_000_000, "not_subscribed")
    ]
    assert not w.open_gaps


def test_a_handover_replaces_a_not_subscribed_gap_and_nothing_else(tmp_path: Path) -> None:
    """The feed joined the token first (``not_subscribed``), the lease round's hand-over came
    after: the gap is the hand-over's, from the earlier start. A gap of any other reason
    stays as it opened, and a hand-over is not replaced by a later ``not_subscribed``."""
    clock = Clock(T0 + 5_000_000)
    w = ArchiveWriter(tmp_path, clock=clock)
    w.open_gap("JOINED", "not_subscribed")  # start: now (T0 + 5 s)
    w.open_gap("JOINED", "handover", T0 + 2_000_000)
    w.open_gap("LATE", "not_subscribed")
    w.open_gap("LATE", "handover", T0 + 9_000_000)  # the earlier start wins
    w.open_gap("CUT", "disconnect", T0 + 1_000_000)
    w.open_gap("CUT", "handover", T0 + 500_000)
    w.open_gap("TAKEN", "handover", T0 + 3_000_000)
    w.open_gap("TAKEN", "not_subscribed")
    assert {t: (g.start, g.reason) for t, g in w.open_gaps.items()} == {
        "JOINED": (T0 + 2_000_000, "handover"),
        "LATE": (T0 + 5_000_000, "handover"),
        "CUT": (T0 + 1_000_000, "disconnect"),
        "TAKEN": (T0 + 3_000_000, "handover"),
    }
