"""Deterministic generation of the initial world from one ``random.Random``.

Everything here is a pure function of the RNG state and ``now``: the same seed
and the same ``now`` give the same universe, byte for byte.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from polytape.sim.model import Book, Event, Fill, Market, Sport, Tag

DAY = 86_400.0

_SUBJECTS = [
    "Bitcoin",
    "Ethereum",
    "the Fed",
    "NVIDIA",
    "Tesla",
    "OpenAI",
    "Apple",
    "the ECB",
    "Solana",
    "Gold",
    "the S&P 500",
    "SpaceX",
    "the UN",
    "Argentina",
    "Japan",
    "Brazil",
    "Taylor Swift",
]
_PREDICATES = [
    "hit a new all-time high",
    "cut rates",
    "announce a merger",
    "close above its June level",
    "launch a new product",
    "be up on the week",
    "win the vote",
    "reach an agreement",
]
_GROUPS = [
    ("Democratic Presidential Nominee 2028", "win the 2028 Democratic presidential nomination"),
    ("Champions League Winner", "win the Champions League"),
    ("Fed Chair Nominee", "be nominated as the next Fed chair"),
    ("Best Picture Winner", "win Best Picture"),
    ("World Cup Winner", "win the World Cup"),
    ("Largest Company End of Year", "be the largest company at year end"),
]
_CANDIDATES = [
    "Gretchen Whitmer",
    "Gavin Newsom",
    "Real Madrid",
    "Arsenal",
    "Kevin Hassett",
    "Kevin Warsh",
    "Oppenheimer II",
    "Dune Part Three",
    "Spain",
    "France",
    "Brazil",
    "Argentina",
    "NVIDIA",
    "Microsoft",
    "Apple",
    "Alphabet",
    "Josh Shapiro",
    "Bayern Munich",
    "Christopher Waller",
]
_TAG_LABELS = [
    ("2", "Politics"),
    ("144", "Elections"),
    ("21", "Crypto"),
    ("1", "Sports"),
    ("100639", "Games"),
    ("120", "Finance"),
    ("596", "Culture"),
    ("101206", "World Elections"),
    ("235", "Bitcoin"),
    ("100350", "Soccer"),
    ("82", "EPL"),
    ("780", "La Liga"),
    ("100149", "NCAAB"),
    ("745", "NBA"),
    ("1401", "Tech"),
    ("107", "Business"),
    ("102458", "Earn 4%"),
    ("264", "Primaries"),
]
_SPORTS = [
    ("ncaab", "1,100149,100639"),
    ("epl", "1,82,306,100639,100350"),
    ("lal", "1,780,100639,100350"),
    ("nba", "1,745, 100639,"),
]
_NAMES = ["", "", "", "NYC-NO.1-Jungle-FanYang", "whale-watcher", "Theo4", "domer", "sharky"]
_PSEUDONYMS = ["", "", "Enchanting-Populist", "Grim-Wallaby", "Frosty-Heron", "Quiet-Otter"]


def iso(ts: float, digits: int) -> str:
    """Gamma ISO-8601 ``Z`` timestamp with 0, 3 or 6 fraction digits."""
    dt = datetime.fromtimestamp(ts, UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return base + "Z"
    return f"{base}.{dt.microsecond:06d}"[: len(base) + 1 + digits] + "Z"


def closed_time(ts: float) -> str:
    """Gamma ``closedTime``: ``YYYY-MM-DD HH:MM:SS+00``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def hex_id(rng: random.Random, nbytes: int) -> str:
    """``0x`` + lower-case hex of ``nbytes`` random bytes."""
    return "0x" + format(rng.getrandbits(nbytes * 8), f"0{nbytes * 2}x")


def token_id(rng: random.Random) -> str:
    """A decimal token id of 76-78 digits, like the real ERC-1155 ids."""
    return str(rng.getrandbits(256) | (1 << 250))


def slugify(text: str) -> str:
    """Lower-case, dash-separated slug."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(part for part in out.split("-") if part)


@dataclass
class Universe:
    """What ``generate_universe`` returns; ``World`` takes ownership of it."""

    tags: list[Tag]
    sports: list[Sport]
    events: dict[str, Event]
    markets: dict[str, Market]
    wallets: list[tuple[str, str, str]]  # (address, name, pseudonym)
    fills: list[Fill] = field(default_factory=list)
    open_interest: dict[str, float] = field(default_factory=dict)
    next_seq: int = 0


def _digits(rng: random.Random) -> int:
    return rng.choice((0, 3, 6, 6))


def _make_tags(rng: random.Random, now: float) -> list[Tag]:
    tags = []
    for tid, label in _TAG_LABELS:
        created = now - rng.uniform(200, 900) * DAY
        force = rng.choice((None, False, True))
        tags.append(Tag(tid, label, slugify(label), iso(created, _digits(rng)), iso(now - DAY, 6), force))
    return tags


def _make_sports(rng: random.Random, now: float) -> list[Sport]:
    return [
        Sport(i + 1, sport, tags, str(rng.randint(1, 99)), iso(now - rng.uniform(30, 300) * DAY, 6))
        for i, (sport, tags) in enumerate(_SPORTS)
    ]


def make_book(rng: random.Random, price: float, tick: str, ts_ms: int) -> Book:
    """A plausible book around the YES fair ``price``, on the market's tick."""
    step = Decimal(tick)
    mid = Decimal(str(round(price, 4)))
    half = step * rng.randint(1, 3)
    best_bid = max(step, ((mid - half) / step).to_integral_value() * step)
    best_ask = min(Decimal(1) - step, max(best_bid + step, ((mid + half) / step).to_integral_value() * step))
    book = Book(timestamp_ms=ts_ms, tick_size=tick)
    for i in range(rng.randint(3, 12)):
        p = best_bid - step * i * rng.randint(1, 3)
        if p >= step:
            book.bids[p] = random_size(rng)
    for i in range(rng.randint(3, 12)):
        p = best_ask + step * i * rng.randint(1, 3)
        if p <= Decimal(1) - step:
            book.asks[p] = random_size(rng)
    return book


def random_size(rng: random.Random) -> Decimal:
    """A resting size with 0-2 decimals, heavy tailed."""
    value = math.exp(rng.gauss(6.0, 1.6))
    return Decimal(str(round(max(5.0, value), rng.choice((0, 2, 2)))))


def _new_market(
    rng: random.Random, now: float, event: Event, question: str, title: str, neg_risk: bool
) -> Market:
    created = now - rng.uniform(5, 120) * DAY
    price = rng.uniform(0.03, 0.97) if not neg_risk else rng.uniform(0.005, 0.4)
    volume = round(math.exp(rng.gauss(11, 2)), 6)
    neg_risk_id = event.neg_risk_market_id
    market = Market(
        gamma_id=str(rng.randint(500_000, 1_900_000)),
        condition_id=hex_id(rng, 32),
        question_id=(neg_risk_id[:-2] + format(len(event.market_ids), "02x"))
        if neg_risk
        else hex_id(rng, 32),
        event_id=event.id,
        slug=f"{slugify(question)[:70]}-{rng.randint(100, 999)}",
        question=question,
        group_item_title=title,
        outcomes=["Yes", "No"] if rng.random() < 0.9 else ["Up", "Down"],
        token_ids=[token_id(rng), token_id(rng)],
        price=price,
        volume=volume,
        liquidity=round(math.exp(rng.gauss(9, 1.5)), 5),
        volume_24hr=round(volume * rng.uniform(0.001, 0.05), 6),
        tick_size=rng.choice(("0.01", "0.001")),
        neg_risk_gamma=neg_risk,
        neg_risk_clob=neg_risk,
        neg_risk_market_id=neg_risk_id if neg_risk else "",
        neg_risk_request_id=hex_id(rng, 32) if neg_risk else "",
        enable_order_book=True,
        closed=False,
        closed_ts=None,
        created_at=iso(created, _digits(rng)),
        updated_at=iso(now - rng.uniform(0, 3600), 6),
        start_date=iso(created + 3600, 3),
        end_date=event.end_date,
        accepting_orders_ts=iso(created + 3000, 0),
        deploying_ts=iso(created + 60, 6),
        image=f"https://polymarket-upload.s3.us-east-2.amazonaws.com/{slugify(title or question)[:40]}.png",
    )
    market.book = make_book(rng, price, market.tick_size, int(now * 1000) - rng.randint(1000, 600_000))
    return market


def _new_event(rng: random.Random, now: float, index: int, tags: list[Tag], neg_risk: bool) -> Event:
    created = now - rng.uniform(30, 400) * DAY
    if neg_risk:
        title, _ = _GROUPS[index % len(_GROUPS)]
        title = f"{title} #{index}" if index >= len(_GROUPS) else title
    else:
        title = f"Will {rng.choice(_SUBJECTS)} {rng.choice(_PREDICATES)} by {2027 + index % 3}?"
    tag_ids = sorted({t.id for t in rng.sample(tags, rng.randint(1, 4))}, key=int)
    end = now + rng.uniform(3, 700) * DAY
    return Event(
        id=str(10_000 + index * 37 + rng.randint(0, 30)),
        slug=f"{slugify(title)}-{index}",
        title=title,
        description=f"This market will resolve according to the listed rules for: {title}",
        neg_risk=neg_risk,
        neg_risk_market_id=hex_id(rng, 32)[:-2] + "00" if neg_risk else "",
        created_at=iso(created, 6),
        creation_date=iso(created + 1, 6),
        start_date=iso(created + 30, 6),
        end_date=iso(math.floor(end / DAY) * DAY, 0),
        updated_at=iso(now - rng.uniform(0, 3600), 6),
        image=f"https://polymarket-upload.s3.us-east-2.amazonaws.com/{slugify(title)[:40]}.png",
        tag_ids=tag_ids,
        market_ids=[],
        comment_count=rng.randint(0, 900),
    )


def generate_universe(rng: random.Random, now: float, n_events: int, n_closed_events: int) -> Universe:
    """Tags, sports, events and markets (books included), quirks assigned."""
    tags = _make_tags(rng, now)
    sports = _make_sports(rng, now)
    events: dict[str, Event] = {}
    markets: dict[str, Market] = {}
    for index in range(n_events + n_closed_events):
        neg_risk = rng.random() < 0.35
        event = _new_event(rng, now, index, tags, neg_risk)
        n_markets = rng.randint(2, 6) if neg_risk else 1
        for j in range(n_markets):
            if neg_risk:
                cand = _CANDIDATES[(index * 7 + j) % len(_CANDIDATES)]
                verb = _GROUPS[index % len(_GROUPS)][1]
                market = _new_market(rng, now, event, f"Will {cand} {verb}?", cand, True)
            else:
                market = _new_market(rng, now, event, event.title, "", False)
            markets[market.condition_id] = market
            event.market_ids.append(market.condition_id)
        events[event.id] = event
        if index >= n_events:
            close_ts = now - rng.uniform(0.5, 20) * DAY
            event.closed, event.closed_ts = True, close_ts
            for cid in event.market_ids:
                resolve(markets[cid], close_ts, rng.randint(0, 1))
    _unique_gamma_ids(markets)
    for event in events.values():
        if event.neg_risk and not event.closed:
            _price_group_consistently([markets[cid] for cid in event.market_ids])
    _assign_quirks(rng, markets)
    wallets = [
        (hex_id(rng, 20), rng.choice(_NAMES), rng.choice(_PSEUDONYMS)) for _ in range(max(40, n_events * 4))
    ]
    oi = {cid: round(m.liquidity * rng.uniform(0.5, 4.0), 6) for cid, m in markets.items()}
    return Universe(tags, sports, events, markets, wallets, open_interest=oi)


def _price_group_consistently(group: list[Market]) -> None:
    """Make a neg-risk group's YES prices sum to about 1, as arbitrageurs keep them.

    Prices are drawn independently, which would leave a standing arbitrage in
    most groups; each book is shifted (by whole ticks) to its rescaled price.
    """
    total = sum(m.price for m in group)
    if total <= 0:
        return
    for market in group:
        target = market.price / total
        book = market.book
        if book is not None:
            step = Decimal(book.tick_size)
            delta = (Decimal(str(target - market.price)) / step).to_integral_value() * step
            lo, hi = step, Decimal(1) - step
            book.bids = {p + delta: q for p, q in book.bids.items() if lo <= p + delta <= hi}
            book.asks = {p + delta: q for p, q in book.asks.items() if lo <= p + delta <= hi}
        market.price = target


def _unique_gamma_ids(markets: dict[str, Market]) -> None:
    """Gamma market ids are unique; random draws can collide in large worlds."""
    seen: set[str] = set()
    for market in markets.values():
        gid = int(market.gamma_id)
        while str(gid) in seen:
            gid += 1
        market.gamma_id = str(gid)
        seen.add(market.gamma_id)


def resolve(market: Market, ts: float, winner: int) -> None:
    """Close and resolve a market (Gamma ``active`` stays true, as the real one does)."""
    market.closed, market.closed_ts, market.winner_index = True, ts, winner
    market.price = 1.0 if winner == 0 else 0.0
    market.book = None


def _assign_quirks(rng: random.Random, markets: dict[str, Market]) -> None:
    """Spread the real API's quirks over the open markets, each at least once."""
    open_markets = [m for m in markets.values() if not m.closed]
    quirks = [
        "token_ids_array",
        "gamma_negrisk_mismatch",
        "legacy_no_negrisk",
        "no_order_book",
        "rfc3339_book_ts",
        "oi_unservable",
        "sparse_prices",
    ]
    for i, quirk in enumerate(quirks):
        # a guaranteed holder (distinct per quirk), plus a few random ones
        holders = [open_markets[(i * 5 + 3) % len(open_markets)]]
        holders += [m for m in open_markets if rng.random() < 0.05]
        for market in holders:
            if quirk == "gamma_negrisk_mismatch" and market.neg_risk_gamma:
                market = next((m for m in open_markets if not m.neg_risk_gamma), market)
            _apply_quirk(market, quirk)


def _apply_quirk(market: Market, quirk: str) -> None:
    if quirk in market.quirks:
        return
    market.quirks.append(quirk)
    if quirk == "token_ids_array":
        market.token_ids_as_array = True
    elif quirk == "gamma_negrisk_mismatch":
        market.neg_risk_gamma, market.neg_risk_clob = False, True
    elif quirk == "legacy_no_negrisk":
        market.neg_risk_gamma = None
    elif quirk == "no_order_book":
        market.enable_order_book, market.book = False, None
    elif quirk == "rfc3339_book_ts":
        market.rfc3339_book_ts = True
    elif quirk == "oi_unservable":
        market.oi_servable = False
    elif quirk == "sparse_prices":
        market.sparse_prices = True
