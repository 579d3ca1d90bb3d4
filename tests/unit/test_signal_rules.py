"""The signal rules, pure: each fires exactly on its situation with the right payload."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from polytape.books import BookRegistry
from polytape.normalize.books import BookMsg, decode_frame
from polytape.normalize.trades import normalize_trade_v1
from polytape.signals import live, rules
from polytape.signals.model import (
    BinaryMarket,
    BookView,
    NegRiskEvent,
    OiSnapshot,
    PricePoint,
    PriceSeries,
    Prior,
    RuleConfig,
    TradeIn,
)
from tests.support.fixtures import fixture_json, fixture_text

NOW = datetime(2026, 7, 2, 12, 0, 0, tzinfo=UTC)
CFG = RuleConfig()  # the settings' defaults


def trade(n: int, usd: float, *, wallet: str = "0xw", minutes_ago: float = 1.0, cid: str = "0xc") -> TradeIn:
    price = 0.5
    return TradeIn(
        id=n,
        dedupe_key=f"k{n}",
        transaction_hash=f"0xtx{n}",
        wallet=wallet,
        condition_id=cid,
        token_id="t-yes",
        side="BUY",
        outcome="Yes",
        outcome_index=0,
        size=usd / price,
        price=price,
        usd_value=usd,
        trade_ts=NOW - timedelta(minutes=minutes_ago),
        question="Will it?",
    )


def book(
    token: str, bids: list[tuple[float, float]], asks: list[tuple[float, float]], age: float = 1.0
) -> BookView:
    return BookView(token, None, tuple(bids), tuple(asks), NOW - timedelta(seconds=age))


# --- large_trade -------------------------------------------------------------------


def test_large_trade_on_a_recorded_whale_print() -> None:
    raw = fixture_json("data_trades.json")[0]
    raw = {**raw, "size": 20_000, "timestamp": int(NOW.timestamp()) - 30}
    rec = normalize_trade_v1(raw, NOW)
    fields = [f.name for f in dataclasses.fields(TradeIn) if f.name not in ("id", "question")]
    t = TradeIn(id=1, question=raw["title"], **{name: rec[name] for name in fields})
    [sig] = rules.large_trade([t], CFG, NOW)
    assert sig.signal_type == "large_trade"
    assert sig.dedupe_key == "large_trade:" + rec["dedupe_key"]
    assert sig.condition_id == raw["conditionId"] and sig.token_id == raw["asset"]
    assert sig.score == pytest.approx(20_000 * 0.765)
    assert sig.payload == {
        "wallet": raw["proxyWallet"],
        "side": "BUY",
        "outcome": "Yes",
        "outcome_index": 0,
        "size": 20_000.0,
        "price": 0.765,
        "usd_value": pytest.approx(15_300.0),
        "question": "Will Spain win on 2026-07-02?",
        "transaction_hash": raw["transactionHash"],
        "trade_ts": (NOW - timedelta(seconds=30)).isoformat(),
        "trade_dedupe_key": rec["dedupe_key"],
    }


def test_large_trade_threshold_is_inclusive_and_history_is_not_news() -> None:
    at, below = trade(1, 10_000.0), trade(2, 9_999.99)
    old = trade(3, 50_000.0, minutes_ago=120)
    assert [s.payload["transaction_hash"] for s in rules.large_trade([at, below, old], CFG, NOW)] == ["0xtx1"]


# --- wallet_accumulation -----------------------------------------------------------------


def test_accumulation_fires_once_per_group_with_its_totals() -> None:
    rows = [
        trade(1, 20_000, minutes_ago=50),
        trade(2, 15_000, minutes_ago=30),
        trade(3, 16_000, minutes_ago=5),
    ]
    other = trade(4, 40_000, wallet="0xother", minutes_ago=5)
    [sig] = rules.wallet_accumulation([*rows, other], {1, 2, 3, 4}, CFG, NOW)
    assert sig.signal_type == "wallet_accumulation" and sig.condition_id == "0xc"
    p = sig.payload
    assert (p["wallet"], p["side"], p["trades"], p["total_usd"], p["level"]) == ("0xw", "BUY", 3, 51_000.0, 1)
    assert p["transaction_hashes"] == ["0xtx1", "0xtx2", "0xtx3"]
    assert sig.subject == "0xc:0xw:t-yes:BUY"


def test_accumulation_needs_the_trades_inside_one_window_and_a_new_trade() -> None:
    spread = [trade(1, 30_000, minutes_ago=100), trade(2, 30_000, minutes_ago=10)]
    assert rules.wallet_accumulation(spread, {1, 2}, CFG, NOW) == []
    close = [trade(1, 30_000, minutes_ago=20), trade(2, 30_000, minutes_ago=10)]
    assert rules.wallet_accumulation(close, set(), CFG, NOW) == []  # nothing new: no news
    assert len(rules.wallet_accumulation(close, {2}, CFG, NOW)) == 1


# --- complement_arb ----------------------------------------------------------------------


def market(yes: BookView | None, no: BookView | None) -> BinaryMarket:
    return BinaryMarket("0xc", "Will it?", yes, no)


def test_complement_arb_buy_side_with_sizes() -> None:
    yes = book("y", [(0.40, 10)], [(0.45, 100), (0.47, 100)])
    no = book("n", [(0.45, 10)], [(0.50, 60), (0.51, 200)])
    [sig] = rules.complement_arb([market(yes, no)], CFG, NOW)
    p = sig.payload
    assert (p["side"], p["edge"], p["price_sum"]) == ("buy", 0.05, 0.95)
    assert (p["yes_price"], p["no_price"], p["size_at_best"]) == (0.45, 0.50, 60)
    # 60 @ 0.95, then 40 @ 0.96, then 100 @ 0.98 (edge 0.02 > 0.01); 0.47+0.51 = 0.98 is the last step
    assert p["executable_size"] == 200
    assert p["cost"] == pytest.approx(60 * 0.95 + 40 * 0.96 + 100 * 0.98)
    assert p["expected_profit"] == pytest.approx(200 - (60 * 0.95 + 40 * 0.96 + 100 * 0.98))
    assert sig.score == pytest.approx(p["expected_profit"])


def test_complement_arb_sell_side() -> None:
    yes = book("y", [(0.55, 30)], [(0.60, 10)])
    no = book("n", [(0.50, 20)], [(0.52, 10)])
    [sig] = rules.complement_arb([market(yes, no)], CFG, NOW)
    assert (sig.payload["side"], sig.payload["edge"], sig.payload["size_at_best"]) == ("sell", 0.05, 20)


def test_complement_arb_edge_must_beat_the_minimum() -> None:
    yes = book("y", [(0.40, 10)], [(0.49, 100)])
    no = book("n", [(0.45, 10)], [(0.50, 100)])  # 0.99: edge exactly 0.01, not more
    assert rules.complement_arb([market(yes, no)], CFG, NOW) == []
    assert rules.complement_arb([market(yes, None)], CFG, NOW) == []


def test_stale_or_crossed_books_are_never_evidence() -> None:
    fresh_no = book("n", [(0.40, 10)], [(0.50, 100)])
    stale_yes = book("y", [(0.40, 10)], [(0.45, 100)], age=CFG.book_max_age_seconds + 1)
    crossed_yes = book("y", [(0.46, 10)], [(0.45, 100)])
    assert rules.complement_arb([market(stale_yes, fresh_no)], CFG, NOW) == []
    assert rules.complement_arb([market(crossed_yes, fresh_no)], CFG, NOW) == []
    legs = [("0xa", "A", stale_yes), ("0xb", "B", fresh_no)]
    assert rules.neg_risk_arb([NegRiskEvent("e", "E", legs)], CFG, NOW) == []


# --- neg_risk_arb --------------------------------------------------------------------------


def test_neg_risk_arb_over_every_outcome() -> None:
    legs = [
        ("0xa", "A?", book("a", [(0.20, 5)], [(0.30, 100)])),
        ("0xb", "B?", book("b", [(0.20, 5)], [(0.30, 40)])),
        ("0xc", "C?", book("c", [(0.20, 5)], [(0.35, 70)])),
    ]
    [sig] = rules.neg_risk_arb([NegRiskEvent("ev1", "Who?", legs)], CFG, NOW)
    p = sig.payload
    assert sig.condition_id is None and sig.subject == "event:ev1"
    assert (p["side"], p["edge"], p["size_at_best"], p["executable_size"]) == ("buy", 0.05, 40, 40)
    assert [(leg["condition_id"], leg["price"], leg["size"]) for leg in p["legs"]] == [
        ("0xa", 0.30, 100),
        ("0xb", 0.30, 40),
        ("0xc", 0.35, 70),
    ]
    missing = [*legs[:2], ("0xc", "C?", None)]
    assert rules.neg_risk_arb([NegRiskEvent("ev1", "Who?", missing)], CFG, NOW) == []


# --- price_move and oi_change -------------------------------------------------------------


def series(*points: tuple[float, float], basis: str = "mid") -> PriceSeries:
    return PriceSeries("0xc", basis, [PricePoint(NOW - timedelta(minutes=m), p) for m, p in points], "Q?")


def test_price_move_within_the_window() -> None:
    [sig] = rules.price_move([series((40, 0.10), (20, 0.40), (10, 0.45), (0, 0.52))], CFG, NOW)
    p = sig.payload
    assert (p["direction"], p["from_price"], p["to_price"], p["move"]) == ("up", 0.40, 0.52, 0.12)
    assert sig.score == pytest.approx(0.12)
    assert rules.price_move([series((20, 0.45), (0, 0.52))], CFG, NOW) == []
    [down] = rules.price_move([series((25, 0.60), (0, 0.50), basis="last_trade")], CFG, NOW)
    assert (down.payload["direction"], down.payload["basis"], down.payload["move"]) == (
        "down",
        "last_trade",
        -0.1,
    )


def test_oi_change_needs_both_thresholds() -> None:
    t0, t1 = NOW - timedelta(minutes=5), NOW

    def snaps(a: float, b: float) -> dict[str, list[OiSnapshot]]:
        return {"0xc": [OiSnapshot(t0, a), OiSnapshot(t1, b)]}

    [sig] = rules.oi_change(snaps(100_000, 160_000), {"0xc": "Q?"}, CFG, NOW)
    assert (sig.payload["change_usd"], sig.payload["change_pct"]) == (60_000, 60.0)
    assert sig.dedupe_key == f"oi_change:0xc:{t1.isoformat()}"
    assert rules.oi_change(snaps(100_000, 105_000), {}, CFG, NOW) == []  # 5%
    assert rules.oi_change(snaps(1_000_000, 1_060_000), {}, CFG, NOW) == []  # 6%
    assert rules.oi_change(snaps(200_000, 140_000), {}, CFG, NOW)[0].payload["change_pct"] == -30.0


# --- cooldown and dedupe -------------------------------------------------------------------


def arb_at(when: datetime, yes_ask: float, size: float = 100) -> list:
    yes = BookView("y", None, ((0.40, 10),), ((yes_ask, size),), when)
    no = BookView("n", None, ((0.40, 10),), ((0.50, size),), when)
    return rules.complement_arb([market(yes, no)], CFG, when)


def test_a_standing_condition_is_one_signal_until_it_materially_changes() -> None:
    [first] = arb_at(NOW, 0.45)
    prior = {("complement_arb", "0xc"): Prior(first.detected_at, first.row()["payload"])}
    later = NOW + timedelta(minutes=5)
    assert arb_at(later, 0.45)[0].dedupe_key == first.dedupe_key  # same bucket, same state
    assert rules.apply_cooldown(arb_at(later, 0.45), prior, CFG, later) == []
    assert rules.apply_cooldown(arb_at(later, 0.445), prior, CFG, later) == []  # edge +0.005: noise
    [wider] = rules.apply_cooldown(arb_at(later, 0.43), prior, CFG, later)  # edge +0.02
    [deeper] = rules.apply_cooldown(arb_at(later, 0.45, size=250), prior, CFG, later)
    assert len({first.dedupe_key, wider.dedupe_key, deeper.dedupe_key}) == 3
    after = NOW + CFG.cooldown + timedelta(seconds=1)
    [again] = rules.apply_cooldown(arb_at(after, 0.45), prior, CFG, after)
    assert again.dedupe_key != first.dedupe_key


def test_cooldown_keeps_the_strongest_per_subject_and_never_holds_trades() -> None:
    trades = [trade(1, 20_000), trade(2, 30_000)]
    signals = rules.large_trade(trades, CFG, NOW)
    assert len(rules.apply_cooldown(signals + signals, {}, CFG, NOW)) == 4  # keys dedupe them later
    moves = rules.price_move(
        [series((20, 0.40), (0, 0.52)), series((20, 0.40), (0, 0.55), basis="last_trade")], CFG, NOW
    )
    [kept] = rules.apply_cooldown(moves, {}, CFG, NOW)
    assert kept.payload["basis"] == "last_trade"


def test_walk_legs_stops_when_the_edge_is_gone() -> None:
    ladders = [[(0.40, 10.0), (0.45, 10.0)], [(0.50, 5.0), (0.60, 100.0)]]
    size, cost = rules.walk_legs(ladders, buy=True, min_edge=0.01)
    assert (size, cost) == (5.0, pytest.approx(4.5))  # the next set costs 1.00: no edge left


# --- live books: the feed vouches for quiet ones ----------------------------------------


def live_registry(received_at: datetime) -> tuple[BookRegistry, str]:
    """A registry holding the recorded WS book, received at ``received_at``."""
    (msg,) = decode_frame(fixture_text("ws_book.json"))
    assert isinstance(msg, BookMsg)
    registry = BookRegistry()
    registry.track(msg.asset_id, msg.market)
    registry.ensure(msg.asset_id, msg.market).apply_snapshot(msg, received_at)
    return registry, msg.asset_id


def fake_feed(
    token_id: str, *, connected: bool, payload_age: float, wanted: set[str] = frozenset()
) -> object:
    """The slice of a BookFeed the engine reads: channels, owners, the keeper's heal sets."""
    channel = SimpleNamespace(connected=connected, last_payload_at=1000.0 - payload_age)
    keeper = SimpleNamespace(wanted=dict.fromkeys(wanted, "hash_mismatch"), in_flight=set())
    return SimpleNamespace(channels={"ws-1": channel}, owner={token_id: "ws-1"}, keeper=keeper)


def test_a_quiet_book_on_a_talking_connection_is_current_as_of_its_last_payload() -> None:
    registry, token_id = live_registry(NOW - timedelta(minutes=5))
    feed = fake_feed(token_id, connected=True, payload_age=0.5)
    confirmed = live.feed_confirmations(feed, NOW, monotonic_now=1000.0)
    assert confirmed(token_id) == NOW - timedelta(seconds=0.5)
    [view] = live.views_from_registry(registry, confirmed=confirmed).values()
    assert view.updated_at == NOW - timedelta(seconds=0.5)
    assert view.is_evidence(NOW, CFG.book_max_age_seconds)
    # without the feed's word the same book is five minutes old: not evidence
    [blind] = live.views_from_registry(registry).values()
    assert blind.updated_at == NOW - timedelta(minutes=5)
    assert not blind.is_evidence(NOW, CFG.book_max_age_seconds)
    assert (blind.bids, blind.asks) == (view.bids, view.asks)


@pytest.mark.parametrize(
    ("connected", "payload_age", "suspect"),
    [(False, 0.5, False), (True, 0.5, True)],
    ids=["disconnected", "awaiting-heal"],
)
def test_the_feed_does_not_vouch_for_a_book_it_cannot_vouch_for(
    connected: bool, payload_age: float, suspect: bool
) -> None:
    registry, token_id = live_registry(NOW - timedelta(minutes=5))
    feed = fake_feed(
        token_id, connected=connected, payload_age=payload_age, wanted={token_id} if suspect else set()
    )
    confirmed = live.feed_confirmations(feed, NOW, monotonic_now=1000.0)
    assert confirmed(token_id) is None
    [view] = live.views_from_registry(registry, confirmed=confirmed).values()
    assert view.updated_at == NOW - timedelta(minutes=5)


def test_a_silent_connection_vouches_only_as_far_as_its_last_payload() -> None:
    registry, token_id = live_registry(NOW - timedelta(minutes=5))
    feed = fake_feed(token_id, connected=True, payload_age=90.0)
    [view] = live.views_from_registry(registry, confirmed=live.feed_confirmations(feed, NOW, 1000.0)).values()
    assert view.updated_at == NOW - timedelta(seconds=90)
    assert not view.is_evidence(NOW, CFG.book_max_age_seconds)


def test_no_feed_or_an_unknown_shape_vouches_for_nothing() -> None:
    assert live.feed_confirmations(None, NOW)("t") is None
    assert live.feed_confirmations(SimpleNamespace(channels=[]), NOW)("t") is None


def test_trade_horizon_is_a_setting_floored_by_the_windows() -> None:
    from polytape.config import load_settings

    assert RuleConfig.from_settings(load_settings()).trade_horizon == timedelta(hours=1)
    longer = load_settings(signal_trade_horizon_minutes=180)
    assert RuleConfig.from_settings(longer).trade_horizon == timedelta(hours=3)
    windows = load_settings(signal_trade_horizon_minutes=5, signal_accumulation_window_minutes=90)
    assert RuleConfig.from_settings(windows).trade_horizon == timedelta(minutes=90)
