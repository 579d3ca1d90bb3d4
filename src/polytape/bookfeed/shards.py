"""The shard planner: which market-channel connection follows which tokens (pure), and the connect ramp.

Tokens are split over connections of at most ``limit`` assets (lessons.md #2).
A universe change moves only the tokens that changed: removed tokens leave the
connection that had them, new tokens fill connections with room (the fullest
first, so few connections stay half empty) before a new connection is opened.
A connection that keeps failing is split in two (lessons.md #14): when one
poisoned asset or an overloaded subscription is the cause, halving isolates it
in a few steps while the healthy half records again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class ShardPlan:
    """Where new tokens go: onto existing connections, and onto new ones."""

    fill: dict[str, list[str]] = field(default_factory=dict)  # connection -> tokens to subscribe
    new: list[list[str]] = field(default_factory=list)  # one list per new connection


def plan_add(shards: Mapping[str, Iterable[str]], tokens: Iterable[str], limit: int) -> ShardPlan:
    """Place ``tokens`` (not yet followed) on connections of at most ``limit`` assets."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pending = sorted(set(tokens))
    plan = ShardPlan()
    sizes = {name: len(set(assets)) for name, assets in shards.items()}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        room = limit - sizes[name]
        if room <= 0 or not pending:
            continue
        plan.fill[name], pending = pending[:room], pending[room:]
    plan.new = [pending[i : i + limit] for i in range(0, len(pending), limit)]
    return plan


def plan_remove(owner: Mapping[str, str], tokens: Iterable[str]) -> dict[str, list[str]]:
    """Tokens to unsubscribe, by the connection that follows them (unknown ones are ignored)."""
    out: dict[str, list[str]] = {}
    for token_id in sorted(set(tokens)):
        name = owner.get(token_id)
        if name is not None:
            out.setdefault(name, []).append(token_id)
    return out


def split(assets: Iterable[str]) -> tuple[list[str], list[str]]:
    """Halve a failing connection's assets: (kept, moved to a new connection)."""
    ordered = sorted(set(assets))
    if len(ordered) < 2:
        raise ValueError("cannot split a connection of fewer than two assets")
    middle = len(ordered) // 2
    return ordered[:middle], ordered[middle:]


def should_split(
    consecutive_failures: int,
    assets: int,
    after: int,
    *,
    others_healthy: bool = True,
    connections: int = 0,
    max_connections: int | None = None,
) -> bool:
    """A connection that failed ``after`` times in a row, with something to halve.

    Only while another connection works (when every connection fails, the venue or the
    network is down, and halving would only multiply sockets) and below ``max_connections``.
    """
    if max_connections is not None and connections >= max_connections:
        return False
    return consecutive_failures >= after and assets >= 2 and others_healthy


def connection_cap(tokens: int, limit: int) -> int:
    """At most this many connections: twice the planned ones, plus room to isolate a few bad assets."""
    return 2 * -(-tokens // limit) + 16


class ConnectRamp:
    """At most ``per_second`` connection attempts per second, across every connection of a feed.

    Each caller of :meth:`wait` gets the next free slot, so 230 connections (or a burst of
    reconnects) open on a ramp instead of all at once.
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.interval = 1.0 / per_second
        self.clock = clock
        self._next = 0.0

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait for it (pure bookkeeping)."""
        now = self.clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        return slot - now

    async def wait(self) -> None:
        """Wait for this caller's slot."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
