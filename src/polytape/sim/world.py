"""The deterministic simulated world: state, live evolution, planting, truth.

``World(seed)`` builds a universe from ``random.Random(seed)`` around the wall
clock (or an explicit ``now``), with a few days of trade history generated
backwards. ``step(now)`` moves it forward and emits feed events (book deltas,
trades, snapshots, tick-size changes) to listeners, which the WebSocket layer
turns into wire messages. No global randomness is used anywhere.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from polytape.sim import payloads
from polytape.sim.generate import DAY, Universe, generate_universe, hex_id, random_size, resolve
from polytape.sim.model import (
    ONE,
    Book,
    BookEvent,
    Event,
    FeedEvent,
    Fill,
    LevelChange,
    Market,
    PriceChangeEvent,
    ResolvedEvent,
    TickSizeEvent,
    TradeEvent,
    fmt_decimal,
)

Listener = Callable[[FeedEvent], None]
LevelInput = Sequence[tuple[Any, Any]]

LARGE_TRADE_USD = 10_000.0


class World:
    """A seeded Polymarket universe and its ground truth.

    Truth attributes: ``events``, ``markets`` (by condition id), ``tokens``
    (token id → (condition id, outcome index)), ``trades`` (every fill ever
    served, oldest first), ``open_interest`` (condition id → USD) and ``books``.
    """

    def __init__(
        self,
        seed: int = 1,
        *,
        n_events: int = 30,
        n_closed_events: int = 4,
        history_days: float = 3.0,
        trades_per_day: int = 1500,
        now: float | None = None,
        keep_book_history: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = time.time() if now is None else now
        universe: Universe = generate_universe(self.rng, self.now, n_events, n_closed_events)
        self.tags = universe.tags
        self.sports = universe.sports
        self.events: dict[str, Event] = universe.events
        self.markets: dict[str, Market] = universe.markets
        self.open_interest: dict[str, float] = universe.open_interest
        self.wallets = universe.wallets
        self.tokens: dict[str, tuple[str, int]] = {
            tid: (cid, i) for cid, m in self.markets.items() for i, tid in enumerate(m.token_ids)
        }
        self.trades: list[Fill] = []
        self.step_count = 0
        self._seq = 0
        self._listeners: list[Listener] = []
        self._generate_history(history_days, trades_per_day)
        # condition id -> [(server ms, book copy or None)], in the order the changes happened
        self.book_history: dict[str, list[tuple[int, Book | None]]] | None = None
        if keep_book_history:
            self.book_history = {}
            for market in self.markets.values():
                if market.book is not None:
                    self._remember(market)

    # ---- listeners -------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` synchronously with every feed event from now on."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: FeedEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # ---- lookups ---------------------------------------------------------------

    def market_of_token(self, token_id: str) -> tuple[Market, int]:
        """The market holding ``token_id`` and the token's outcome index."""
        cid, index = self.tokens[token_id]
        return self.markets[cid], index

    def event_of(self, market: Market) -> Event:
        """The Gamma event a market belongs to."""
        return self.events[market.event_id]

    @property
    def books(self) -> dict[str, dict[str, Any]]:
        """Current REST ``/book`` payload of every token that has a book."""
        return {
            tid: payloads.clob_book(m, i)
            for cid, m in self.markets.items()
            if m.book is not None
            for i, tid in enumerate(m.token_ids)
        }

    def truth(self) -> dict[str, Any]:
        """JSON-ready dump of everything the simulator serves (see ``payloads.truth``)."""
        return payloads.truth(self)

    # ---- trade tape ------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _insert_fill(self, fill: Fill) -> None:
        if not self.trades or self.trades[-1].sort_key() <= fill.sort_key():
            self.trades.append(fill)
        else:
            bisect.insort(self.trades, fill, key=Fill.sort_key)
        market = self.markets[fill.condition_id]
        if fill.taker:
            market.volume += fill.usd
            market.volume_24hr += fill.usd

    def _wallet(self) -> tuple[str, str, str]:
        return self.wallets[self.rng.randrange(len(self.wallets))]

    def _fills_for_tx(
        self, market: Market, index: int, side: str, ts: int, parts: Sequence[tuple[Decimal, float]]
    ) -> list[Fill]:
        """Taker fills (one per part, sharing one tx hash and wallet) plus maker rows."""
        tx = hex_id(self.rng, 32)
        taker = self._wallet()
        fills: list[Fill] = []
        for yes_price, size in parts:
            price = float(yes_price if index == 0 else ONE - yes_price)
            if self.rng.random() < 0.03:  # the real tape carries float noise like 0.709999959
                price = round(price - 4.1e-8, 9)
            for is_taker, wallet, row_side in (
                (True, taker, side),
                (False, self._wallet(), "SELL" if side == "BUY" else "BUY"),
            ):
                fills.append(
                    Fill(
                        seq=self._next_seq(),
                        proxy_wallet=wallet[0],
                        side=row_side,
                        asset=market.token_ids[index],
                        condition_id=market.condition_id,
                        size=size,
                        price=price,
                        timestamp=ts,
                        outcome=market.outcomes[index],
                        outcome_index=index,
                        transaction_hash=tx,
                        taker=is_taker,
                        name=wallet[1],
                        pseudonym=wallet[2],
                    )
                )
        return fills

    def _random_size(self, price: float, large: bool) -> float:
        if large:
            return round(self.rng.uniform(LARGE_TRADE_USD, 5 * LARGE_TRADE_USD) / max(price, 0.01), 2)
        return round(max(1.0, math.exp(self.rng.gauss(3.5, 1.4))), self.rng.choice((0, 2, 6)))

    def _generate_history(self, days: float, per_day: int) -> None:
        tradable = [m for m in self.markets.values() if m.enable_order_book]
        weights = [math.sqrt(m.volume_24hr) + 1 for m in tradable]
        start = self.now - days * DAY
        picks = self.rng.choices(tradable, weights, k=int(days * per_day))
        times = sorted(self.rng.uniform(start, self.now - 1) for _ in picks)
        for market, when in zip(picks, times, strict=True):
            ts = when if market.closed_ts is None else min(when, market.closed_ts - 60)
            index, side = self.rng.randint(0, 1), self.rng.choice(("BUY", "BUY", "SELL"))
            tick = Decimal(market.tick_size)
            yes = min(max(market.price + self.rng.gauss(0, 0.02), 0.01), 0.99)
            base = (Decimal(str(yes)) / tick).to_integral_value() * tick
            n_parts = self.rng.choice((1, 1, 1, 1, 1, 2, 3, 4))
            large = self.rng.random() < 0.02
            # a sweep walks away from the touch but never past the price range (tick, 1 - tick)
            prices = [min(max(base + tick * k, tick), ONE - tick) for k in range(n_parts)]
            parts = [(p, self._random_size(yes, large)) for p in dict.fromkeys(prices)]
            for fill in self._fills_for_tx(market, index, side, int(ts), parts):
                self._insert_fill(fill)
        for fill in self.trades:  # books remember the last taker price per token
            market = self.markets[fill.condition_id]
            if fill.taker and market.book is not None:
                market.last_trade_price[fill.outcome_index] = fmt_decimal(Decimal(str(fill.price)))
                market.last_trade_side[fill.outcome_index] = fill.side

    def query_trades(
        self,
        *,
        markets: set[str] | None = None,
        event_ids: set[str] | None = None,
        user: str | None = None,
        side: str | None = None,
        taker_only: bool = True,
        min_cash: float | None = None,
        min_tokens: float | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> Iterable[Fill]:
        """Fills matching the Data API filters, newest first (lazy)."""
        for fill in reversed(self.trades):
            if taker_only and not fill.taker:
                continue
            if start is not None and fill.timestamp < start:
                break
            if end is not None and fill.timestamp > end:
                continue
            if markets is not None and fill.condition_id not in markets:
                continue
            if event_ids is not None and self.markets[fill.condition_id].event_id not in event_ids:
                continue
            if user is not None and fill.proxy_wallet != user:
                continue
            if side is not None and fill.side != side:
                continue
            if min_cash is not None and fill.usd < min_cash:
                continue
            if min_tokens is not None and fill.size < min_tokens:
                continue
            yield fill

    # ---- books -----------------------------------------------------------------

    def _remember(self, market: Market) -> None:
        """Keep the market's book as it is now (when ``keep_book_history``)."""
        if self.book_history is None:
            return
        book = market.book
        ts = book.timestamp_ms if book is not None else int(self.now * 1000)
        self.book_history.setdefault(market.condition_id, []).append(
            (ts, book.copy() if book is not None else None)
        )

    def book_at(
        self, token_id: str, ts_ms: int
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
        """The token's book at server time ``ts_ms`` (every change up to and including it).

        Bids best (highest) first, asks best (lowest) first; None when the token had no
        book then. Needs ``World(keep_book_history=True)``.
        """
        if self.book_history is None:
            raise RuntimeError("World(keep_book_history=True) keeps the history book_at reads")
        market, index = self.market_of_token(token_id)
        history = self.book_history.get(market.condition_id, [])
        i = bisect.bisect_right(history, ts_ms, key=lambda entry: entry[0]) - 1
        if i < 0 or history[i][1] is None:
            return None
        book = history[i][1]
        assert book is not None
        served_bids, served_asks = book.levels(index)
        bids = sorted(((float(lv["price"]), float(lv["size"])) for lv in served_bids), reverse=True)
        asks = sorted((float(lv["price"]), float(lv["size"])) for lv in served_asks)
        return bids, asks

    def _apply_changes(
        self, market: Market, changes: Sequence[tuple[str, Decimal, Decimal]], ts_ms: int
    ) -> PriceChangeEvent:
        """Apply YES-perspective level changes (``bid``/``ask``, price, size; 0 removes).

        Each change yields one entry per token, hashed over that token's whole
        book after the change with the message timestamp, as the real feed does.
        """
        book = market.book
        assert book is not None
        book.timestamp_ms = ts_ms
        out: list[LevelChange] = []
        for book_side, price, size in changes:
            levels = book.bids if book_side == "bid" else book.asks
            if size <= 0:
                levels.pop(price, None)
            else:
                levels[price] = size
            for index in (0, 1):
                token_price = price if index == 0 else ONE - price
                is_bid = (book_side == "bid") == (index == 0)
                bid, ask = book.best(index)
                out.append(
                    LevelChange(
                        asset_id=market.token_ids[index],
                        price=fmt_decimal(token_price),
                        size=fmt_decimal(max(size, Decimal(0))),
                        side="BUY" if is_bid else "SELL",
                        hash=payloads.clob_book(market, index, rest=False)["hash"],
                        best_bid=fmt_decimal(bid) if bid is not None else "0",
                        best_ask=fmt_decimal(ask) if ask is not None else "0",
                    )
                )
        self._remember(market)
        return PriceChangeEvent(market.condition_id, ts_ms, tuple(out))

    def _check_tick(self, market: Market, ts_ms: int) -> None:
        """Move to a 0.001 tick once the book trades above 0.96 or below 0.04."""
        if market.book is None or market.book.tick_size != "0.01":
            return
        bid, ask = market.book.best(0)
        if (bid is not None and bid > Decimal("0.96")) or (ask is not None and ask < Decimal("0.04")):
            market.book.tick_size = market.tick_size = "0.001"
            self._emit(TickSizeEvent(market.condition_id, "0.01", "0.001", ts_ms))

    def set_book(self, token_id: str, bids: LevelInput, asks: LevelInput, *, emit: str = "delta") -> None:
        """Replace a token's book with ``[(price, size), ...]`` levels (any order).

        The sibling token's book follows (it is the mirror). Subscribers get the
        difference as one ``price_change`` (``emit="delta"``), or fresh ``book``
        snapshots (``emit="book"``), or nothing (``emit="none"``).
        """
        market, index = self.market_of_token(token_id)
        if market.book is None:
            market.book = Book(tick_size=market.tick_size)
            market.enable_order_book = True
        book = market.book

        def yes_side(levels: LevelInput) -> dict[Decimal, Decimal]:
            return {
                (Decimal(str(p)) if index == 0 else ONE - Decimal(str(p))): Decimal(str(s)) for p, s in levels
            }

        new_bids, new_asks = (
            (yes_side(bids), yes_side(asks)) if index == 0 else (yes_side(asks), yes_side(bids))
        )
        ts_ms = max(int(time.time() * 1000), book.timestamp_ms + 1)
        if emit == "delta":
            changes: list[tuple[str, Decimal, Decimal]] = []
            for name, old, new in (("bid", book.bids, new_bids), ("ask", book.asks, new_asks)):
                changes += [(name, p, Decimal(0)) for p in sorted(old) if p not in new]
                changes += [(name, p, s) for p, s in sorted(new.items()) if old.get(p) != s]
            event = self._apply_changes(market, changes, ts_ms)
            if changes:
                self._emit(event)
        else:
            book.bids, book.asks, book.timestamp_ms = new_bids, new_asks, ts_ms
            self._remember(market)
            if emit == "book":
                self._emit(BookEvent(market.condition_id))
        self._check_tick(market, ts_ms)

    # ---- planting ----------------------------------------------------------------

    def plant_trade(
        self,
        condition_id: str,
        token_index: int,
        side: str,
        size: float,
        price: float,
        *,
        wallet: str | None = None,
        tx_hash: str | None = None,
        ts: int | None = None,
        taker: bool = True,
        emit: bool = True,
    ) -> Fill:
        """Add one fill to the tape exactly as given (the book is left alone).

        ``price`` is the traded token's price. Emits ``last_trade_price`` for a
        taker fill when ``emit`` is true. Returns the stored fill.
        """
        market = self.markets[condition_id]
        fill = Fill(
            seq=self._next_seq(),
            proxy_wallet=wallet or self._wallet()[0],
            side=side,
            asset=market.token_ids[token_index],
            condition_id=condition_id,
            size=size,
            price=price,
            timestamp=int(time.time()) if ts is None else ts,
            outcome=market.outcomes[token_index],
            outcome_index=token_index,
            transaction_hash=tx_hash or hex_id(self.rng, 32),
            taker=taker,
        )
        self._insert_fill(fill)
        if taker:
            market.last_trade_price[token_index] = str(price)
            market.last_trade_side[token_index] = side
            if emit:
                self._emit(TradeEvent(fill, fill.timestamp * 1000))
        return fill

    def set_open_interest(self, condition_id: str, value: float) -> None:
        """Set the open interest ``/oi`` serves for a market."""
        self.open_interest[condition_id] = value

    def close_market(self, condition_id: str, winner_index: int = 0, *, ts: float | None = None) -> None:
        """Close and resolve a market; its book disappears (``/book`` → 404).

        The event closes too once all its markets are closed. Emits
        ``market_resolved`` to custom-feature subscribers.
        """
        market = self.markets[condition_id]
        when = time.time() if ts is None else ts
        resolve(market, when, winner_index)
        if self.book_history is not None:
            self.book_history.setdefault(condition_id, []).append((int(when * 1000), None))
        event = self.events[market.event_id]
        if all(self.markets[cid].closed for cid in event.market_ids):
            event.closed, event.closed_ts = True, when
        self._emit(ResolvedEvent(condition_id, int(when * 1000)))

    # ---- live evolution ------------------------------------------------------------

    def step(self, now: float | None = None, n: int = 1) -> int:
        """Advance the world ``n`` ticks at wall time ``now``; returns the new fills count."""
        before = len(self.trades)
        for _ in range(n):
            self._step_once(time.time() if now is None else now)
        return len(self.trades) - before

    def _live_markets(self) -> list[Market]:
        return [m for m in self.markets.values() if m.book is not None and not m.closed]

    def _step_once(self, now: float) -> None:
        self.step_count += 1
        self.now = max(self.now, now)
        ts_ms = max(int(now * 1000), 1)
        live = self._live_markets()
        if not live:
            return
        for cid in self.rng.sample(sorted(self.open_interest), k=min(3, len(self.open_interest))):
            self.open_interest[cid] = round(
                max(0.0, self.open_interest[cid] * self.rng.uniform(0.97, 1.04)), 6
            )
        for market in self.rng.sample(live, k=min(len(live), self.rng.randint(1, 3))):
            self._random_level_changes(market, ts_ms)
        weights = [math.sqrt(m.volume_24hr) + 1 for m in live]
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            large = self.rng.random() < 0.08
            self._random_trade(self.rng.choices(live, weights)[0], int(now), ts_ms, large)

    def _random_level_changes(self, market: Market, ts_ms: int) -> None:
        book = market.book
        assert book is not None
        tick = Decimal(book.tick_size)
        changes: list[tuple[str, Decimal, Decimal]] = []
        for _ in range(self.rng.randint(1, 2)):
            side = self.rng.choice(("bid", "ask"))
            levels = book.bids if side == "bid" else book.asks
            best_bid, best_ask = book.best(0)
            roll = self.rng.random()
            if levels and roll < 0.4:
                price = self.rng.choice(sorted(levels))
                changes.append((side, price, random_size(self.rng)))
            elif levels and roll < 0.6 and len(levels) > 2:
                changes.append((side, self.rng.choice(sorted(levels)), Decimal(0)))
            else:
                if side == "bid":
                    top = best_bid if best_bid is not None else Decimal(str(round(market.price, 2)))
                    price = top + tick * self.rng.randint(-3, 1)
                    if best_ask is not None and price >= best_ask:
                        price = best_ask - tick
                else:
                    top = best_ask if best_ask is not None else Decimal(str(round(market.price, 2)))
                    price = top + tick * self.rng.randint(-1, 3)
                    if best_bid is not None and price <= best_bid:
                        price = best_bid + tick
                if tick <= price <= ONE - tick:
                    changes.append((side, price, random_size(self.rng)))
        if changes:
            self._emit(self._apply_changes(market, changes, ts_ms))
            self._check_tick(market, ts_ms)

    def _random_trade(self, market: Market, ts: int, ts_ms: int, large: bool) -> None:
        """A taker order sweeping the book: one fill per level, one tx hash."""
        book = market.book
        assert book is not None
        index, side = self.rng.randint(0, 1), self.rng.choice(("BUY", "BUY", "SELL"))
        # BUY token 0 / SELL token 1 lift YES asks; the other two hit YES bids
        lift_asks = (side == "BUY") == (index == 0)
        levels = book.asks if lift_asks else book.bids
        if not levels:
            return
        ordered = sorted(levels, reverse=not lift_asks)
        first = ordered[0] if index == 0 else ONE - ordered[0]
        remaining = Decimal(str(self._random_size(float(first), large)))
        parts: list[tuple[Decimal, float]] = []
        changes: list[tuple[str, Decimal, Decimal]] = []
        name = "ask" if lift_asks else "bid"
        if large:  # a whale takes the top level and beyond in one fill
            left = levels[ordered[0]] - remaining
            keep = left if left > 0 else (Decimal(0) if len(levels) > 1 else random_size(self.rng))
            parts.append((ordered[0], float(remaining)))
            changes.append((name, ordered[0], keep))
            remaining = Decimal(0)
        for price in ordered:
            if remaining <= 0 or len(parts) >= 4 or len(levels) - len(changes) <= 1:
                break
            take = min(remaining, levels[price])
            parts.append((price, float(take)))
            changes.append((name, price, levels[price] - take))
            remaining -= take
        if not parts:
            return
        fills = self._fills_for_tx(market, index, side, ts, parts)
        for fill in fills:
            self._insert_fill(fill)
        self._apply_changes(market, changes, ts_ms)  # a trade is reported by `book`, not deltas
        last = next(f for f in reversed(fills) if f.taker)
        market.last_trade_price[index] = fmt_decimal(Decimal(str(last.price)))
        market.last_trade_side[index] = side
        market.price = float(parts[-1][0])
        for fill in fills:
            if fill.taker:
                self._emit(TradeEvent(fill, ts_ms))
        self._emit(BookEvent(market.condition_id))
        self._check_tick(market, ts_ms)
