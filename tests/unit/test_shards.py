"""The shard planner and the connect ramp (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polytape.bookfeed.shards import ConnectRamp, connection_cap, plan_add, plan_remove, should_split, split


def test_new_tokens_fill_the_fullest_connections_first_then_open_new_ones() -> None:
    shards = {"ws-1": {"a", "b", "c"}, "ws-2": {"d"}, "ws-3": {"e", "f", "g", "h"}}
    plan = plan_add(shards, [f"n{i:02d}" for i in range(10)], limit=4)
    assert plan.fill == {"ws-1": ["n00"], "ws-2": ["n01", "n02", "n03"]}
    assert plan.new == [["n04", "n05", "n06", "n07"], ["n08", "n09"]]


def test_removal_touches_only_the_connections_of_the_removed_tokens() -> None:
    owner = {"a": "ws-1", "b": "ws-1", "c": "ws-2", "d": "ws-3"}
    assert plan_remove(owner, ["b", "c", "zz"]) == {"ws-1": ["b"], "ws-2": ["c"]}


def test_split_halves_and_refuses_a_single_asset() -> None:
    assert split(["d", "a", "c", "b", "e"]) == (["a", "b"], ["c", "d", "e"])
    with pytest.raises(ValueError):
        split(["a"])
    assert should_split(3, 2, after=3)
    assert not should_split(2, 200, after=3) and not should_split(9, 1, after=3)
    assert not should_split(9, 200, after=3, others_healthy=False)  # the venue is down: do not multiply
    assert not should_split(9, 200, after=3, connections=40, max_connections=40)
    assert connection_cap(46_000, 200) == 476


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=9), max_size=6),
    new=st.integers(min_value=0, max_value=60),
    limit=st.integers(min_value=1, max_value=9),
)
def test_a_plan_never_overfills_and_places_every_token_once(sizes: list[int], new: int, limit: int) -> None:
    shards = {f"ws-{i}": {f"old{i}-{j}" for j in range(min(n, limit))} for i, n in enumerate(sizes)}
    tokens = [f"t{i}" for i in range(new)]
    plan = plan_add(shards, tokens, limit)
    placed = [t for ids in plan.fill.values() for t in ids] + [t for ids in plan.new for t in ids]
    assert sorted(placed) == sorted(tokens)
    for name, ids in plan.fill.items():
        assert len(shards[name]) + len(ids) <= limit
    assert all(1 <= len(ids) <= limit for ids in plan.new)
    room = sum(limit - len(a) for a in shards.values())
    assert len(plan.new) == max(0, -(-(new - room) // limit))  # no new connection while one has room


def test_the_ramp_spaces_connects() -> None:
    now = [100.0]
    ramp = ConnectRamp(4.0, clock=lambda: now[0])
    assert [ramp.reserve() for _ in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    now[0] = 110.0  # long idle: no debt, no burst credit either
    assert ramp.reserve() == 0.0 and ramp.reserve() == 0.25
