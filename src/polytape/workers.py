"""This process as one of several workers: its identity, heartbeat and token leases.

:class:`WorkerLeases` is the feed's token source in ``polytape run``: every
``worker_heartbeat_seconds`` it runs a lease round (:func:`polytape.store.workers.lease_round`)
over the tracked universe and tells the feed which tokens this worker records. It fences
itself: when it could not renew its leases for ``worker_lease_seconds`` (the time after
which the others take them over), it records nothing until it can again, so no token is
recorded by two workers at once. Tokens taken over from another worker are hand-overs:
each is logged and passed to ``runtime.on_handover`` (the archive's gap ledger).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from polytape.config import Settings
from polytape.errors import PolytapeError
from polytape.runtime import Runtime
from polytape.store import Store
from polytape.store.universe import tracked_tokens, universe_version
from polytape.store.workers import Handover, LeaseRound, lease_round

log = structlog.get_logger("polytape.workers")


@dataclass(frozen=True)
class TokenView:
    """What a feed follows: ``owned`` (token -> condition), out of the whole ``universe``."""

    owned: dict[str, str]
    universe: frozenset[str]


class WorkerLeases:
    """The token source of one worker's feed (see the module notes)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        worker_id: str,
        clock: Callable[[], datetime],
        runtime: Runtime | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.worker_id = worker_id
        self.clock = clock
        self.runtime = runtime if runtime is not None else Runtime()
        self.ttl = settings.worker_lease_seconds
        self.last_round: LeaseRound | None = None
        self.handovers = 0
        self._universe: dict[str, str] = {}
        self._version = -1
        self._renewed = -float("inf")  # monotonic time of the last successful round
        self._fenced = False

    def current(self) -> bool:
        """True while the leases were renewed within the lease time (no one else may hold them)."""
        return time.monotonic() - self._renewed < self.ttl

    def _wanted(self) -> dict[str, str]:
        version = universe_version(self.store)
        if version != self._version or not self._universe:
            self._universe = tracked_tokens(self.store)
            self._version = version
        return self._universe

    def _round(self) -> tuple[LeaseRound, dict[str, str]]:
        wanted = self._wanted()
        return lease_round(self.store, self.worker_id, wanted, self.clock(), ttl=self.ttl), wanted

    async def __call__(self) -> TokenView:
        """One lease round; the tokens to record now."""
        try:
            result, wanted = await asyncio.to_thread(self._round)
        except PolytapeError as exc:
            return self._unrenewed(str(exc))
        except Exception as exc:  # a database error of any kind: keep what we hold, for a while
            return self._unrenewed(f"{type(exc).__name__}: {exc}")
        self._renewed = time.monotonic()
        if self._fenced:
            log.info("leases renewed; recording again", worker=self.worker_id)
            self._fenced = False
        if result.claimed or result.released:
            log.info(
                "token leases changed",
                worker=self.worker_id,
                claimed=len(result.claimed),
                released=len(result.released),
                owned=len(result.owned),
                workers=result.live_workers,
            )
        if result.handovers:
            self._hand_over(result.handovers)
        self.last_round = result
        return TokenView({t: wanted[t] for t in result.owned}, frozenset(wanted))

    def _unrenewed(self, error: str) -> TokenView:
        held = self.last_round.owned if self.last_round is not None else frozenset()
        if time.monotonic() - self._renewed < self.ttl:
            log.warning("lease round failed; keeping my tokens for now", error=error[:200])
            return TokenView({t: self._universe.get(t, "") for t in held}, frozenset(self._universe))
        if not self._fenced and held:
            log.error(
                "leases not renewed in time; recording nothing until the database answers",
                worker=self.worker_id,
                tokens=len(held),
                error=error[:200],
            )
        self._fenced = True
        self.last_round = None
        return TokenView({}, frozenset(self._universe))

    def _hand_over(self, handovers: tuple[Handover, ...]) -> None:
        self.handovers += len(handovers)
        reasons: dict[str, int] = {}
        for h in handovers:
            reasons[h.reason] = reasons.get(h.reason, 0) + 1
        oldest = min(h.since for h in handovers)
        log.info(
            "took over tokens",
            worker=self.worker_id,
            tokens=len(handovers),
            since=oldest.isoformat(),
            reasons=reasons,
        )
        hook = self.runtime.on_handover
        if hook is not None:
            try:
                hook(list(handovers), self.clock())
            except Exception:
                log.exception("recording the hand-over gaps failed")
