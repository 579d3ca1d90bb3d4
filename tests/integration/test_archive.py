"""The archive against the simulator over real sockets: replay equals the venue's own history."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import polytape.archive
from polytape.archive.reader import book_at
from polytape.archive.report import coverage
from polytape.jobs.base import run_job
from polytape.jobs.refresh_universe import ensure_universe
from polytape.jobs.registry import job_fn
from polytape.sim import SimServer, World
from polytape.store import Store
from tests.support.waiting import stepping, wait_until

from .books_support import in_sync, live_tracked, running_feed
from .support import sim_context

FAST = {
    "book_resync_minutes": 0.1,
    "ws_silence_timeout_seconds": 1.5,
    "ws_reconnect_max_seconds": 0.3,
    "ws_ping_interval_seconds": 0.5,
    "book_write_seconds": 0.2,
    "archive_flush_seconds": 0.3,
    "archive_checkpoint_seconds": 2.0,
    "max_tracked_markets": 8,
    "ws_assets_per_connection": 6,
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def skipped_deltas(sim: SimServer) -> list[tuple[str, int]]:
    """(token, server ms) of every price_change the simulator dropped on purpose."""
    assert sim.hub is not None
    out = []
    for conn in sim.hub.connections:
        for kind, payload in conn.faults:
            if kind == "skip_delta":
                for ch in payload.get("price_changes", []):
                    out.append((ch["asset_id"], int(payload["timestamp"])))
    return out


async def test_replay_equals_the_simulators_history_except_inside_gaps(
    sqlite_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    sim = SimServer(World(7, keep_book_history=True))
    await sim.start()
    store = Store.open(sqlite_url)
    try:
        start = now_ms()
        async with sim_context(sim, store, archive_dir=str(root), **FAST) as ctx:
            assert ctx.runtime.archive is not None
            ctx.runtime.archive.start()
            await ensure_universe(ctx)
            tokens = await asyncio.to_thread(live_tracked, sim, store)
            async with running_feed(ctx, universe_poll_seconds=0.5) as feed:
                await wait_until(lambda: in_sync(sim, store, tokens), 15, "the first books")
                async with stepping(sim):
                    sim.inject(host="ws", kind="malformed", count=2)  # junk frames
                    sim.inject(host="ws", kind="unknown_event", count=2)
                    await asyncio.sleep(1.0)
                    sim.inject(host="ws", kind="drop")  # a cut connection
                    await wait_until(
                        lambda: sum(c.reconnects for c in feed.channels.values()) >= 1, 10, "a reconnect"
                    )
                    await asyncio.sleep(1.0)
                    # a connection gone silent: the watchdog replaces it (a ``stale`` gap)
                    frozen = sim.hub.connection_of(tokens[-1]) if sim.hub is not None else None
                    assert frozen is not None
                    sim.inject(host="ws", kind="freeze", connection=frozen.id)
                    await wait_until(
                        lambda: feed.keeper.stats.resyncs["stale"] >= 1, 10, "a silent socket replaced"
                    )
                    await asyncio.sleep(1.0)
                # A delta lost in transit, found by the next one's hash.
                target = tokens[0]
                sim.inject(host="ws", kind="skip_delta", count=1)
                sim.world.set_book(target, [("0.31", "10"), ("0.30", "20")], [("0.70", "5")])
                await wait_until(lambda: bool(skipped_deltas(sim)), 5, "the delta dropped")
                mismatches = feed.keeper.stats.hash_mismatches
                sim.world.set_book(target, [("0.31", "11"), ("0.30", "20")], [("0.70", "5")])
                await wait_until(lambda: feed.keeper.stats.hash_mismatches > mismatches, 5, "the mismatch")
                await wait_until(lambda: in_sync(sim, store, tokens), 15, "the heal")
                async with stepping(sim):
                    await asyncio.sleep(1.0)
            dropped = skipped_deltas(sim)
        # A restart: a new writer on the same directory (the interval between is a gap).
        async with sim_context(sim, store, archive_dir=str(root), **FAST) as ctx:
            assert ctx.runtime.archive is not None
            ctx.runtime.archive.start()
            async with running_feed(ctx, universe_poll_seconds=0.5):
                await wait_until(lambda: in_sync(sim, store, tokens), 15, "books after the restart")
                async with stepping(sim):
                    await asyncio.sleep(2.0)
        end = now_ms()
    finally:
        store.close()
        await sim.stop()

    archive = polytape.archive.open(root)
    gaps = archive.gaps().to_pylist()
    reasons = {g["reason"] for g in gaps}
    # (``not_subscribed`` rows need a first snapshot newer than the joining: the simulator
    # stamps a book with its last change, so they are covered by the writer's unit test)
    assert {"hash_mismatch", "stopped", "stale", "disconnect"} <= reasons, gaps
    for token_id, ts in dropped:
        if token_id in tokens:
            assert any(
                g["token_id"] == token_id and g["start"] <= ts * 1000 <= (g["end"] or 1 << 62) for g in gaps
            ), (token_id, ts, gaps)
    rng = random.Random(3)
    checked = in_gap = 0
    for token_id in tokens:
        first = archive.incremental_book_L2(tokens=[token_id]).column("timestamp")[0].as_py() // 1000
        for _ in range(25):
            at = rng.randint(max(start, first), end)
            got = book_at(root, token_id, at * 1000)
            if got.in_gap:
                in_gap += 1
                continue
            assert got.found, (token_id, at)
            assert (got.bids, got.asks) == sim.world.book_at(token_id, at), (token_id, at)
            checked += 1
    print(f"replayed {checked} moments equal to the truth, {in_gap} inside gaps")
    assert checked >= 0.75 * (checked + in_gap), (checked, in_gap)
    shares = [c.share for c in coverage(root, start * 1000, end * 1000, tokens)]
    assert sum(shares) / len(shares) > 0.75, shares
    for path in root.rglob("*.parquet"):
        pq.read_table(path)


async def test_polling_mode_records_snapshots(sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    sim = SimServer(World(7, keep_book_history=True))
    await sim.start()
    store = Store.open(sqlite_url)
    try:
        async with sim_context(
            sim, store, archive_dir=str(root), ws_enabled=False, max_tracked_markets=5
        ) as ctx:
            result = await run_job(ctx, "sync-orderbooks", job_fn("sync-orderbooks"))
            assert result.status in ("ok", "partial")
            tokens = await asyncio.to_thread(live_tracked, sim, store)
            polled_at = now_ms()
        # closing the context flushed the archive
        table = polytape.archive.open(root).incremental_book_L2(tokens=tokens)
        assert set(table.column("token_id").to_pylist()) == set(tokens)
        assert all(table.column("is_snapshot").to_pylist())
        assert set(table.column("connection_id").to_pylist()) == {"poll"}
        for token_id in tokens:
            got = book_at(root, token_id, polled_at * 1000)
            assert got.found and (got.bids, got.asks) == sim.world.book_at(token_id, polled_at)
    finally:
        store.close()
        await sim.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_loses_at_most_the_flush_interval_as_a_gap(sqlite_url: str, tmp_path: Path) -> None:
    import os
    import signal

    from .runproc import run_env, start_run, wait_exit
    from .runproc import wait_until as wait_for

    root = tmp_path / "polytape-archive"
    sim = SimServer(World(7), live=True, live_interval=0.05)
    await sim.start()
    try:
        env = run_env(sim, sqlite_url, POLYTAPE_ARCHIVE_FLUSH_SECONDS="1", POLYTAPE_MAX_TRACKED_MARKETS="6")
        proc = start_run(env, tmp_path)
        state = root / "_state" / "run.json"
        await wait_for(
            lambda: state.exists() and len(list(root.rglob("*.parquet"))) >= 3, 60, "flushed files"
        )
        await asyncio.sleep(2.5)
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.time_ns() // 1000
        await wait_exit(proc, 10)
        for path in root.rglob("*.parquet"):
            pq.read_table(path)  # every file reads: nothing half-written is visible
        import json

        last = json.loads(state.read_text())
        assert killed_at - last["written_at"] <= 1_000_000 + 1_500_000  # the flush interval (+ a tick)
        proc = start_run(env, tmp_path, "run2.log")
        await wait_for(
            lambda: any(g["reason"] == "crash" for g in _gaps(root)), 60, "the crash recorded as gaps"
        )
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 30) == 0
    finally:
        await sim.stop()
    crash = [g for g in _gaps(root) if g["reason"] == "crash"]
    assert {g["token_id"] for g in crash} <= set(last["tokens"])
    for g in crash:
        assert g["start"] == last["tokens"][g["token_id"]]  # from the newest row on disk


def _gaps(root: Path) -> list[dict[str, object]]:
    try:
        return list(polytape.archive.open(root).gaps().to_pylist())
    except FileNotFoundError:
        return []
