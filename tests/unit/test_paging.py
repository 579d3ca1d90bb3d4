"""The pure pagers: what they ask for next, given the last answer."""

from __future__ import annotations

from datetime import UTC, datetime

from polytape.paging import (
    GammaCursor,
    TradeCursorPager,
    TradeCursorRequest,
    TradeWindow,
    TradeWindowPager,
    first_sightings,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


T0 = int(NOW.timestamp()) - 100_000  # times below are seconds after T0


def trades(*stamps: int) -> list[dict[str, object]]:
    return [{"timestamp": T0 + ts} for ts in stamps]


def test_gamma_keyset_follows_the_cursor_until_none() -> None:
    cursor = GammaCursor("keyset")
    assert cursor.next_request(2) == {"limit": 2, "after_cursor": None}
    cursor.on_page(2, "c1", page_size=2)
    assert cursor.next_request(2) == {"limit": 2, "after_cursor": "c1"}
    cursor.on_page(1, None, page_size=2)
    assert cursor.done and cursor.pages == 2 and cursor.next_request(2) is None
    resumed = GammaCursor.from_state({**cursor.as_state(), "done": False, "after_cursor": "c1"}, "keyset")
    assert resumed.next_request(2) == {"limit": 2, "after_cursor": "c1"} and resumed.pages == 2
    assert GammaCursor.from_state(cursor.as_state(), "keyset").pages == 0  # finished: start over
    assert GammaCursor.from_state(resumed.as_state(), "offset").pages == 0  # other mode: start over


def test_gamma_offset_pages_until_a_short_page() -> None:
    cursor = GammaCursor("offset")
    assert cursor.next_request(3) == {"limit": 3, "offset": 0, "order": "id", "ascending": False}
    cursor.on_page(3, page_size=3)
    assert cursor.next_request(3) == {"limit": 3, "offset": 3, "order": "id", "ascending": False}
    cursor.on_page(2, page_size=3)
    assert cursor.done and cursor.offset == 5


def test_first_sightings_drop_repeats_across_pages() -> None:
    seen: set[str] = set()
    assert first_sightings([{"id": 1}, {"id": 2}], seen) == ([{"id": 1}, {"id": 2}], 0)
    assert first_sightings([{"id": 2}, {"id": 3}, {"x": 0}], seen) == ([{"id": 3}, {"x": 0}], 1)


def test_window_pager_narrows_at_the_offset_cap() -> None:
    pager = TradeWindowPager(floor=T0 + 100, hi=None, page_size=2, offset_cap=4, max_pages=None, now=NOW)
    assert pager.next_request() == TradeWindow(limit=2, offset=0, start=T0 + 100, end=None)
    pager.on_page(trades(200, 190))
    assert pager.next_request() == TradeWindow(2, 2, T0 + 100, None)
    pager.on_page(trades(180, 170))
    # offset 4 reaches the cap: the window is cut at the oldest trade seen, offset back to 0
    assert pager.next_request() == TradeWindow(2, 0, T0 + 100, T0 + 170)
    assert pager.narrowings == 1 and pager.newest == T0 + 200
    pager.on_page(trades(170, 150))
    pager.on_page(trades(99))  # a short page below the floor ends the walk
    assert pager.complete and pager.next_request() is None and pager.gaps == []


def test_window_pager_records_an_overfull_second_as_a_gap() -> None:
    pager = TradeWindowPager(floor=T0 + 100, hi=T0 + 500, page_size=2, offset_cap=2, max_pages=None, now=NOW)
    pager.on_page(trades(500, 500))
    assert pager.next_request() == TradeWindow(2, 0, T0 + 100, T0 + 499)
    assert pager.gaps == [(T0 + 500, T0 + 500)]


def test_window_pager_refused_at_once_gives_up_the_window() -> None:
    pager = TradeWindowPager(floor=T0 + 100, hi=T0 + 300, page_size=2, offset_cap=10, max_pages=None, now=NOW)
    pager.on_cap_refused()
    assert pager.complete and pager.gaps == [(T0 + 100, T0 + 300)] and pager.cap_refusals == 1


def test_window_pager_stops_at_its_page_budget() -> None:
    pager = TradeWindowPager(floor=T0, hi=None, page_size=1, offset_cap=100, max_pages=2, now=NOW)
    pager.on_page(trades(9))
    pager.on_page(trades(8))
    assert pager.exhausted and not pager.complete and pager.next_request() is None
    assert pager.resume_hi == T0 + 8


def test_cursor_pager_follows_and_stops_on_a_repeated_cursor() -> None:
    pager = TradeCursorPager(floor=T0 + 100, page_size=5, max_pages=None, now=NOW)
    assert pager.next_request() == TradeCursorRequest(None, 5)
    pager.on_page(trades(300, 290), "a")
    assert pager.next_request() == TradeCursorRequest("a", None)
    pager.on_page(trades(280), "a")
    assert pager.repeated_cursor and pager.next_request() is None and not pager.complete
    assert pager.resume_hi == T0 + 280


def test_cursor_pager_ends_below_the_floor() -> None:
    pager = TradeCursorPager(floor=T0 + 100, page_size=5, max_pages=None, now=NOW)
    pager.on_page(trades(120, 90), "b")
    assert pager.complete and pager.next_request() is None
