"""A load generator for the book feed: pre-generated frames replayed at a set rate.

The regular simulator builds every message on the fly from its world model and cannot
keep up with the whole venue. This one generates everything before the timed run and
only sends during it, so the generator is never the bottleneck:

- a venue of ``tokens`` books (pairs of mirrored outcome tokens, ``levels`` levels a
  side, prices on a 0.001 tick) with their true state and hashes (reference.md §3.6);
- ``rate × seconds`` v2 ``price_change`` messages, each changing one level of a market's
  YES book and its mirror in NO, carrying the hash and best bid/ask after the change,
  serialized to text up front.

It serves the market channel (``/ws/market``: initial subscribe with a ``book`` dump,
``operation`` subscribe/unsubscribe, ``PING``/``PONG``) and ``POST /books`` /
``GET /book`` on 127.0.0.1, in its own process. The replay starts on
``POST /control/start`` (``{"rate": r}`` may change the rate, e.g. for a burst); message
``k`` goes out at ``start + k / rate`` to every connection following either token of
its market. ``GET /control/report`` gives what was sent, how late, and the send time of
every message (for receipt→flush lags); ``GET /control/status`` the subscriptions.

Run: ``python -m polytape.sim.load --tokens 46000 --rate 6700 --seconds 300``; it
prints one ``READY {json}`` line with its URLs once the messages are generated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from polytape.books import OrderBook
from polytape.normalize.books import BUY, SELL, BookMsg, Level

TICK = 0.001
BOOK_CHUNK = 100  # books per initial-dump frame


def token_pairs(n_tokens: int) -> list[tuple[str, str, str]]:
    """``(condition id, YES token, NO token)`` of the venue, deterministic in ``n_tokens``."""
    return [(f"0x{i:064x}", str(10**76 + 2 * i), str(10**76 + 2 * i + 1)) for i in range(n_tokens // 2)]


def mirror(levels: list[Level]) -> list[Level]:
    """The other outcome's side: price 1 − p, order reversed (still server order)."""
    return [Level(f"{1 - float(lvl.price):.3f}", lvl.size) for lvl in reversed(levels)]


def price_change(
    books: dict[str, OrderBook], cid: str, yes: str, no: str, tick: int, side: str, size: str, ts: str
) -> dict[str, Any]:
    """A v2 ``price_change`` moving one level (``tick`` thousandths) of YES and its mirror in NO.

    The change is applied to ``books`` first, so each entry carries the server's hash and
    best prices after it.
    """
    entries = []
    for token, price, s in ((yes, tick, side), (no, 1000 - tick, "SELL" if side == "BUY" else "BUY")):
        book = books[token]
        p = f"{price / 1000:.3f}"
        book.apply_change(s, p, size, ts)
        entries.append(
            {"asset_id": token, "price": p, "size": size, "side": s, "hash": book.compute_hash(),
             "best_bid": str(book.best_bid or 0), "best_ask": str(book.best_ask or 0)}
        )  # fmt: skip
    return {"market": cid, "price_changes": entries, "timestamp": ts, "event_type": "price_change"}


class Venue:
    """The true books of every token, and the messages that move them."""

    def __init__(self, n_tokens: int, levels: int, seed: int = 14, t0_ms: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.pairs = token_pairs(n_tokens)
        self.levels = levels
        self.t0_ms = int(time.time() * 1000) if t0_ms is None else t0_ms
        self.gen_rate = 1.0
        self.mids: list[int] = []  # per market: the YES book's mid, in ticks
        self.snapshots: list[tuple[list[Level], list[Level]]] = []  # per market: YES bids, asks
        rng = self.rng
        for _ in self.pairs:
            mid = rng.randint(100 + levels, 900 - levels)
            self.mids.append(mid)
            sizes = [str(rng.randint(5, 5000)) for _ in range(2 * levels)]
            bids = [Level(f"{(mid - levels + k) / 1000:.3f}", sizes[k]) for k in range(levels)]
            asks = [Level(f"{(mid + levels - k) / 1000:.3f}", sizes[levels + k]) for k in range(levels)]
            self.snapshots.append((bids, asks))
        self.books = self._initial_books()  # what is served: the state at the replay position
        self._snapshots: dict[str, dict[str, Any]] = {}
        self._ws_books: dict[str, str] = {}
        self.changes: list[tuple[str, str, str]] = []  # per message: YES side, YES price, size

    def _initial_books(self) -> dict[str, OrderBook]:
        books: dict[str, OrderBook] = {}
        at = datetime.fromtimestamp(self.t0_ms / 1000, UTC)
        for (cid, yes, no), (bids, asks) in zip(self.pairs, self.snapshots, strict=True):
            for token, b, a in ((yes, bids, asks), (no, mirror(asks), mirror(bids))):
                book = OrderBook(token, cid)
                book.min_order_size, book.neg_risk = "5", False
                msg = BookMsg(cid, token, str(self.t0_ms), b, a, tick_size="0.001", last_trade_price="0.5")
                book.apply_snapshot(msg, at)
                books[token] = book
        return books

    def advance(self, k: int) -> None:
        """Apply message ``k`` to the served books (the replay calls this as it sends it)."""
        _, yes, no = self.pairs[self.markets[k]]
        side, price, size = self.changes[k]
        ts = str(self.message_ms(k))
        self.books[yes].apply_change(side, price, size, ts)
        other = "SELL" if side == "BUY" else "BUY"
        self.books[no].apply_change(other, f"{1 - float(price):.3f}", size, ts)
        for token in (yes, no):
            self._snapshots.pop(token, None)
            self._ws_books.pop(token, None)

    def snapshot(self, token_id: str) -> dict[str, Any]:
        """The REST ``/book`` payload of a token now (hash included); cached until it moves."""
        cached = self._snapshots.get(token_id)
        if cached is None:
            cached = self._snapshots[token_id] = self._snapshot(token_id)
        return cached

    def _snapshot(self, token_id: str) -> dict[str, Any]:
        book = self.books[token_id]
        return {
            "market": book.condition_id,
            "asset_id": token_id,
            "timestamp": book.timestamp,
            "hash": book.compute_hash() or "",
            "bids": [{"price": p, "size": s} for p, s in book.side_texts(BUY)],
            "asks": [{"price": p, "size": s} for p, s in book.side_texts(SELL)],
            "min_order_size": book.min_order_size,
            "tick_size": book.tick_size,
            "neg_risk": book.neg_risk,
            "last_trade_price": book.last_trade_price,
        }

    def ws_book(self, token_id: str) -> str:
        """The WS ``book`` message of a token as JSON (REST-only fields included: it verifies alone)."""
        cached = self._ws_books.get(token_id)
        if cached is None:
            cached = self._ws_books[token_id] = json.dumps({"event_type": "book", **self.snapshot(token_id)})
        return cached

    def message_ms(self, k: int) -> int:
        """Server timestamp of message ``k`` (after :meth:`generate`)."""
        return self.t0_ms + 1000 + int(k * 1000 / self.gen_rate)

    def generate(self, n_messages: int, rate: float) -> tuple[list[str], array[int]]:
        """``n_messages`` frames (text) and the market index of each; timestamps follow ``rate``.

        Generated on a copy of the books: the served ones move only as the replay sends.
        """
        enc = msgspec.json.Encoder()
        rng = self.rng
        self.gen_rate = rate
        books = self._initial_books()
        self.markets = markets = array("i")
        frames: list[str] = []
        n_markets = len(self.pairs)
        spread = self.levels
        for k in range(n_messages):
            m = rng.randrange(n_markets)
            cid, yes, no = self.pairs[m]
            ts = str(self.message_ms(k))
            mid = self.mids[m]
            tick = mid + rng.randint(-spread, spread)
            side = "BUY" if tick <= mid else "SELL"
            size = "0" if rng.random() < 0.2 else str(rng.randint(1, 9000))
            msg = price_change(books, cid, yes, no, tick, side, size, ts)
            frames.append(enc.encode(msg).decode())
            markets.append(m)
            self.changes.append((side, f"{tick / 1000:.3f}", size))
        return frames, markets


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    assets: set[str] = field(default_factory=set)
    frames: int = 0


@dataclass
class _Replay:
    rate: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    sent: int = 0  # messages
    frames: int = 0  # message × connection deliveries
    late_max: float = 0.0
    send_times: array[float] = field(default_factory=lambda: array("d"))


class LoadServer:
    """The aiohttp app around a :class:`Venue` and its pre-generated frames."""

    def __init__(self, venue: Venue, frames: list[str], markets: array[int], rate: float) -> None:
        self.venue = venue
        self.frames = frames
        self.markets = markets
        self.rate = rate
        self.subs: dict[str, set[_Conn]] = {}
        self.conns: set[_Conn] = set()
        self.replay = _Replay()
        self._task: asyncio.Task[None] | None = None
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/ws/market", self.ws_market),
                web.post("/books", self.books),
                web.get("/book", self.book),
                web.post("/control/start", self.start),
                web.get("/control/status", self.status),
                web.get("/control/report", self.report),
            ]
        )

    # ---- market channel ----------------------------------------------------------------

    async def ws_market(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Conn(ws)
        self.conns.add(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "PING":
                    await ws.send_str("PONG")
                    continue
                try:
                    body = json.loads(msg.data)
                    ids = [str(t) for t in body.get("assets_ids", [])]
                except (ValueError, AttributeError):
                    continue
                if body.get("operation") == "unsubscribe":
                    for t in ids:
                        conn.assets.discard(t)
                        self.subs.get(t, set()).discard(conn)
                    continue
                fresh = [t for t in ids if t in self.venue.books and t not in conn.assets]
                for t in fresh:
                    conn.assets.add(t)
                    self.subs.setdefault(t, set()).add(conn)
                await self._dump(conn, fresh)
        finally:
            self.conns.discard(conn)
            for t in conn.assets:
                self.subs.get(t, set()).discard(conn)
        return ws

    async def _dump(self, conn: _Conn, ids: list[str]) -> None:
        for i in range(0, len(ids), BOOK_CHUNK):
            chunk = ",".join(self.venue.ws_book(t) for t in ids[i : i + BOOK_CHUNK])
            await conn.ws.send_str("[" + chunk + "]")
            await asyncio.sleep(0)  # let other sockets' handshakes in

    # ---- REST ----------------------------------------------------------------------------

    async def books(self, request: web.Request) -> web.Response:
        body = await request.json()
        ids = [str(item.get("token_id")) for item in body if isinstance(item, dict)]
        out = ",".join(self.venue.ws_book(t) for t in ids if t in self.venue.books)  # a /books item may
        return web.Response(text="[" + out + "]", content_type="application/json")  # carry event_type

    async def book(self, request: web.Request) -> web.Response:
        token = request.query.get("token_id", "")
        if token not in self.venue.books:
            return web.json_response({"error": "No orderbook exists for the requested token id"}, status=404)
        return web.json_response(self.venue.snapshot(token))

    # ---- control ---------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if self._task is not None and not self._task.done():
            return web.json_response({"error": "already running"}, status=409)
        rate = float(body.get("rate", self.rate))
        count = int(body.get("count", len(self.frames) - self.replay.sent))
        self._task = asyncio.create_task(self._run(rate, count))
        return web.json_response({"rate": rate, "count": count})

    async def _run(self, rate: float, count: int) -> None:
        r = self.replay
        r.rate = rate
        loop = asyncio.get_running_loop()
        start = loop.time()
        r.started = time.time()
        first = r.sent
        end = min(len(self.frames), first + count)
        frames, markets, pairs, subs = self.frames, self.markets, self.venue.pairs, self.subs
        advance = self.venue.advance
        k = first
        while k < end:
            now = loop.time()
            due = min(end, first + int((now - start) * rate) + 1)
            wall = time.time()
            while k < due:
                _, yes, no = pairs[markets[k]]
                targets = subs.get(yes, set()) | subs.get(no, set())
                frame = frames[k]
                for conn in targets:
                    if not conn.ws.closed:
                        await conn.ws.send_str(frame)
                        conn.frames += 1
                        r.frames += 1
                advance(k)
                r.send_times.append(wall)
                k += 1
            r.sent = k
            late = loop.time() - (start + (k - first) / rate)
            r.late_max = max(r.late_max, late)
            await asyncio.sleep(0.002)
        r.finished = time.time()

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "connections": len(self.conns),
                "subscribed_tokens": sum(1 for s in self.subs.values() if s),
                "messages": len(self.frames),
                "sent": self.replay.sent,
                "running": self._task is not None and not self._task.done(),
            }
        )

    async def report(self, _request: web.Request) -> web.Response:
        r = self.replay
        return web.json_response(
            {
                "rate": r.rate,
                "sent": r.sent,
                "frames": r.frames,
                "started": r.started,
                "finished": r.finished,
                "late_max_s": round(r.late_max, 3),
                "send_times": r.send_times.tolist(),
                "markets": self.markets[: r.sent].tolist(),
                "timestamps_ms": [self.venue.message_ms(k) for k in range(r.sent)],
            }
        )


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def serve(venue: Venue, frames: list[str], markets: array[int], rate: float, port: int) -> None:
    """Serve until killed; print ``READY {json}`` once listening."""
    server = LoadServer(venue, frames, markets, rate)
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    base = f"127.0.0.1:{bound}"
    info = {"clob_url": f"http://{base}", "ws_url": f"ws://{base}/ws/market", "control": f"http://{base}/control",
            "messages": len(frames), "rss_mb": round(_rss_mb(), 1)}  # fmt: skip
    print("READY " + json.dumps(info), flush=True)
    await asyncio.Event().wait()


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--tokens", type=int, default=46_000)
    ap.add_argument("--levels", type=int, default=20, help="levels a side per book")
    ap.add_argument("--rate", type=float, default=6_700.0, help="messages per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the pre-generated run")
    ap.add_argument("--extra", type=int, default=0, help="more messages beyond rate x seconds (a burst)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args(list(argv) if argv is not None else None)
    t = time.perf_counter()
    venue = Venue(args.tokens, args.levels, args.seed)
    n = int(args.rate * args.seconds) + args.extra
    frames, markets = venue.generate(n, args.rate)
    print(
        f"generated {len(venue.books):,} books and {n:,} messages in {time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(venue, frames, markets, args.rate, args.port))


if __name__ == "__main__":
    main()
