"""Benchmark: idempotent insert of 100,000 trades on SQLite and PostgreSQL, vs row-at-a-time.

Run: ``.venv/bin/python benchmarks/bench_trades.py [--trades 100000] [--baseline 10000]
[--pg postgresql://postgres@127.0.0.1:5432/test]``. For each engine it prints trades/s of

1. polytape's ``insert_trades`` (batched insert-ignore) on an empty table, every row new:
   all rows in one transaction; one transaction per 1,000 rows; one per 500 rows, which is
   how the jobs commit (``sync-large-trades`` and ``backfill trades`` write each API page,
   ``trades_page_size`` ≤ 500, in its own transaction with their watermark or position);
2. the same rows again: every row a duplicate (the rolling window re-reads known trades);
3. the baseline: one ``INSERT … ON CONFLICT DO NOTHING`` statement per row (one commit per
   1,000 rows), on the first ``--baseline`` rows of a fresh table, new then again.

Rows are normalized once beforehand (normalization is not what is measured here). The
PostgreSQL runs use a throwaway schema. Rates are per second of wall clock, and for new
rows also per CPU-second (this process plus its PostgreSQL backend): on a machine shared
with other work the wall clock mostly measures the others.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.dialects import postgresql, sqlite

from polytape.normalize.trades import TradeRecord, normalize_trade_v1
from polytape.store import Store, Tx
from polytape.store import schema as s
from polytape.store.trades import insert_trades

PAGE = 1000
JOB_PAGE = 500  # the most a trades API page holds (config: trades_page_size ≤ 500)


def make_trades(n: int, seed: int = 5) -> list[TradeRecord]:
    """``n`` distinct, realistic fills (multi-fill transactions included)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    base = int(now.timestamp()) - 30 * 86400
    wallets = [f"0x{rng.getrandbits(160):040x}" for _ in range(2000)]
    markets = [
        (f"0x{rng.getrandbits(256):064x}", [str(rng.getrandbits(250)) for _ in range(2)]) for _ in range(300)
    ]
    rows: list[TradeRecord] = []
    while len(rows) < n:
        cid, tokens = rng.choice(markets)
        tx = f"0x{rng.getrandbits(256):064x}"
        index = rng.randint(0, 1)
        ts = base + rng.randrange(30 * 86400)
        for part in range(rng.choice((1, 1, 2, 3))):
            raw = {
                "proxyWallet": rng.choice(wallets),
                "side": rng.choice(("BUY", "SELL")),
                "asset": tokens[index],
                "conditionId": cid,
                "size": round(rng.uniform(1, 50_000), 2),
                "price": round(rng.uniform(0.01, 0.99) + part * 0.001, 3),
                "timestamp": ts,
                "outcome": "Yes" if index == 0 else "No",
                "outcomeIndex": index,
                "transactionHash": tx,
            }
            rows.append(normalize_trade_v1(raw, now))
    rows = rows[:n]
    rows.sort(key=lambda r: r["trade_ts"], reverse=True)  # newest first, as the feed serves them
    return rows


def pages(rows: Sequence[TradeRecord], size: int = PAGE) -> Iterator[Sequence[TradeRecord]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def polytape_insert(store: Store, rows: Sequence[TradeRecord]) -> int:
    """``insert_trades`` per 1,000 rows, one transaction each."""
    return sum(store.write(lambda tx, page=page: insert_trades(tx, page)) for page in pages(rows))


def polytape_insert_job_pages(store: Store, rows: Sequence[TradeRecord]) -> int:
    """What the jobs do: ``insert_trades`` per API page of 500, one transaction per page."""
    return sum(store.write(lambda tx, page=page: insert_trades(tx, page)) for page in pages(rows, JOB_PAGE))


def polytape_insert_one_tx(store: Store, rows: Sequence[TradeRecord]) -> int:
    """``insert_trades`` on all rows in one transaction (it batches by 1,000 inside)."""
    return store.write(lambda tx: insert_trades(tx, rows))


def row_at_a_time(store: Store, rows: Sequence[TradeRecord]) -> int:
    """The baseline: one INSERT … ON CONFLICT DO NOTHING statement per row."""
    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert

    def write(tx: Tx, page: Sequence[TradeRecord]) -> int:
        n = 0
        for row in page:
            stmt = insert(s.trades).values(**row).on_conflict_do_nothing().returning(s.trades.c.id)
            n += len(tx.conn.execute(stmt).all())
        return n

    return sum(store.write(lambda tx, page=page: write(tx, page)) for page in pages(rows))


def timed(fn: Callable[[], int], n: int, store: Store) -> tuple[float, float, int]:
    """(rows/s of wall time, rows/s of CPU time: this process plus its PostgreSQL backend, rows new)."""
    b0 = _backend_cpu(store)
    t0, c0 = time.perf_counter(), time.process_time()
    inserted = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0 + _backend_cpu(store) - b0
    return n / wall, n / cpu, inserted


def _backend_cpu(store: Store) -> float:
    """CPU seconds used so far by the PostgreSQL backend serving ``store`` (0 on SQLite).

    The store's pool hands the same connection back to a sequential caller, so this is
    the backend doing the inserts. WAL writer and checkpointer time is not included.
    """
    if store.dialect != "postgresql":
        return 0.0
    pid = store.read(lambda c: c.exec_driver_sql("select pg_backend_pid()").scalar())
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the server is on another machine
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def bench_engine(name: str, url_for: Callable[[], Any], rows: list[TradeRecord], n_base: int) -> None:
    """Print new/duplicate rates of polytape (two commit patterns) and of the baseline."""
    results: list[tuple[str, int, float, float, float]] = []
    runs: list[tuple[str, Callable[[Store, Sequence[TradeRecord]], int], Sequence[TradeRecord]]] = [
        ("polytape, one transaction", polytape_insert_one_tx, rows),
        ("polytape, commit per 1,000", polytape_insert, rows),
        ("polytape, commit per 500", polytape_insert_job_pages, rows),
        ("row-at-a-time baseline", row_at_a_time, rows[:n_base]),
    ]
    for label, fn, data in runs:
        with url_for() as url:
            store = Store.open(url, batch_size=PAGE)
            run = lambda fn=fn, data=data, st=store: fn(st, data)  # noqa: E731
            new_rate, new_cpu, new_n = timed(run, len(data), store)
            dup_rate, _, dup_n = timed(run, len(data), store)
            count = store.count(s.trades)
            store.close()
        assert new_n == len(data) and dup_n == 0 and count == len(data), (label, new_n, dup_n, count)
        results.append((label, len(data), new_rate, new_cpu, dup_rate))
    base_new, base_dup = results[-1][2], results[-1][4]
    for label, n, new_rate, new_cpu, dup_rate in results:
        print(
            f"{name:<10} {label:<27} {n:>7,} rows: new {new_rate:>8,.0f}/s ({new_rate / base_new:4.1f}x; "
            f"{new_cpu:>7,.0f}/CPU-s), duplicates {dup_rate:>8,.0f}/s ({dup_rate / base_dup:4.1f}x)"
        )


def _sqlite_cache(megabytes: int) -> None:
    """Give every new SQLite connection a bigger page cache (what-if for engine.py)."""
    import sqlalchemy as sa

    def pragma(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute(f"PRAGMA cache_size=-{megabytes * 1024}")

    sa.event.listen(sa.engine.Engine, "connect", pragma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=20_000, help="rows for the row-at-a-time runs")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--sqlite-cache-mb",
        type=int,
        default=0,
        help="also set PRAGMA cache_size on SQLite connections (0: the engine's default)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = make_trades(args.trades)
    print(f"{len(rows):,} trades normalized in {time.perf_counter() - t0:.2f}s")
    engines = args.engines.split(",")
    if "sqlite" in engines:

        @contextmanager
        def sqlite_url() -> Iterator[str]:
            with tempfile.TemporaryDirectory() as tmp:
                yield f"sqlite:///{Path(tmp) / 'bench.db'}"

        if args.sqlite_cache_mb:
            _sqlite_cache(args.sqlite_cache_mb)
        bench_engine("sqlite", sqlite_url, rows, min(args.baseline, len(rows)))
    if "postgresql" in engines:
        bench_engine("postgresql", lambda: pg_schema(args.pg), rows, min(args.baseline, len(rows)))


if __name__ == "__main__":
    main()
