"""The tracked universe: manual overrides and auto-selected markets.

The liquidity score and the selection rules are described above :data:`VOLUME_WEIGHT`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from polytape.store.core import Store, Tx
from polytape.store.schema import market_metrics_ts, market_tokens, markets, tracked_markets

if TYPE_CHECKING:
    from polytape.config import Settings


def add_manual(store: Store, condition_ids: Sequence[str], now: datetime | None = None) -> int:
    """Make these markets manual overrides (an auto row becomes manual)."""
    now = now or datetime.now(UTC)
    rows = [
        {"condition_id": cid.strip(), "source": "manual", "rank": None, "score": None, "selected_at": now}
        for cid in dict.fromkeys(condition_ids)
        if cid.strip()
    ]
    return store.upsert(tracked_markets, rows, update=["source", "selected_at"])


def remove_manual(store: Store, condition_ids: Sequence[str]) -> int:
    t = tracked_markets
    return store.write(
        lambda tx: tx.delete(t, t.c.source == "manual", t.c.condition_id.in_(list(condition_ids)))
    )


def list_tracked(store: Store) -> list[dict[str, Any]]:
    """Tracked markets, manual first, then by rank, with their questions."""
    t, m = tracked_markets, markets
    stmt = (
        sa.select(t, m.c.question)
        .select_from(t.outerjoin(m, m.c.condition_id == t.c.condition_id))
        .order_by(sa.case((t.c.source == "manual", 0), else_=1), t.c.rank, t.c.condition_id)
    )
    return store.fetch_all(stmt)


def tracked_condition_ids(store: Store) -> list[str]:
    """Condition ids of the tracked universe, manual first, then by rank."""
    return [r["condition_id"] for r in list_tracked(store)]


def _tracked_tokens_stmt() -> sa.Select[Any]:
    t, mt, m = tracked_markets, market_tokens, markets
    return (
        sa.select(mt.c.token_id, mt.c.condition_id)
        .select_from(
            mt.join(t, t.c.condition_id == mt.c.condition_id).outerjoin(
                m, m.c.condition_id == mt.c.condition_id
            )
        )
        .where(
            sa.or_(m.c.closed.is_(None), m.c.closed.is_(False)),
            sa.or_(m.c.active.is_(None), m.c.active.is_(True)),
        )
        .order_by(mt.c.condition_id, mt.c.outcome_index)
    )


def tracked_tokens(store: Store) -> dict[str, str]:
    """``token_id -> condition_id`` for every token of the tracked universe's live markets.

    A tracked market that Gamma reports closed or inactive (a manual override that resolved,
    or one a complete sync no longer listed) has no book left to follow: its tokens are left out.
    """
    stmt = _tracked_tokens_stmt()
    return store.read(lambda c: {str(tok): str(cid) for tok, cid in c.execute(stmt)})


# ---- selection ------------------------------------------------------------------------------
#
# Liquidity score (what ranks the auto-selected markets):
#
#     score = gamma_liquidity + open_interest + VOLUME_WEIGHT x gamma_volume      (USD)
#
# Resting liquidity and open interest are money in the market now and count in full;
# Gamma's volume is a lifetime total, so it counts at a tenth. A missing figure counts
# as 0. A market is eligible when it is active, not closed, has an order book
# (``enable_order_book`` and its tokens known) and passes at least one threshold:
# ``gamma_liquidity >= min_liquidity`` OR ``gamma_volume >= min_volume`` OR its latest
# ``open_interest >= min_oi``. Manual overrides come first (oldest first), then eligible
# markets by score (ties by condition id), up to ``max_tracked_markets`` in all.
# In ``all`` mode (``POLYTAPE_UNIVERSE_MODE=all``) every such market with a book is
# taken, with no threshold and no cap.

VOLUME_WEIGHT = 0.1


@dataclass(frozen=True)
class Thresholds:
    """The seed's universe knobs."""

    max_markets: int
    min_liquidity: float
    min_volume: float
    min_oi: float
    mode: str = "ranked"  # or ``all``

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """The universe knobs of a :class:`polytape.config.Settings`."""
        return cls(
            max_markets=settings.max_tracked_markets,
            min_liquidity=settings.min_liquidity,
            min_volume=settings.min_volume,
            min_oi=settings.min_oi,
            mode=settings.universe_mode,
        )


@dataclass(frozen=True)
class Candidate:
    """A market that may enter the universe, with the figures that rank it."""

    condition_id: str
    liquidity: float | None
    volume: float | None
    open_interest: float | None

    def eligible(self, t: Thresholds) -> bool:
        """Passes at least one of the three thresholds."""
        return (
            (self.liquidity is not None and self.liquidity >= t.min_liquidity)
            or (self.volume is not None and self.volume >= t.min_volume)
            or (self.open_interest is not None and self.open_interest >= t.min_oi)
        )

    @property
    def score(self) -> float:
        """The liquidity score (see the module notes)."""
        return (self.liquidity or 0.0) + (self.open_interest or 0.0) + VOLUME_WEIGHT * (self.volume or 0.0)


def select_auto(candidates: Iterable[Candidate], manual: Sequence[str], t: Thresholds) -> list[Candidate]:
    """Eligible markets by score, excluding manual ones, filling what the cap leaves (pure).

    In ``all`` mode every candidate is eligible and there is no cap.
    """
    taken = set(manual)
    every = t.mode == "all"
    eligible = [c for c in candidates if c.condition_id not in taken and (every or c.eligible(t))]
    eligible.sort(key=lambda c: (-c.score, c.condition_id))
    if every:
        return eligible
    room = max(0, t.max_markets - len(manual))
    return eligible[:room]


@dataclass(frozen=True)
class UniverseChange:
    """What one refresh did to the tracked universe."""

    version: int
    markets: int
    tokens: int
    manual: int
    auto: int
    markets_added: frozenset[str] = frozenset()
    markets_removed: frozenset[str] = frozenset()
    tokens_added: frozenset[str] = frozenset()
    tokens_removed: frozenset[str] = frozenset()

    @property
    def changed(self) -> bool:
        """True when a market or token entered or left."""
        return bool(self.markets_added or self.markets_removed or self.tokens_added or self.tokens_removed)


UNIVERSE_STATE_KEY = "universe"
# The members as of the last published version: a refresh announces the difference from
# them, so a manual override added in between (``polytape track add``) is announced too.
UNIVERSE_MEMBERS_KEY = "universe:members"


def _candidates(tx: Tx) -> list[Candidate]:
    m, mt, mm = markets, market_tokens, market_metrics_ts
    latest = (
        sa.select(mm.c.condition_id, sa.func.max(mm.c.ts).label("ts"))
        .where(mm.c.open_interest.is_not(None))
        .group_by(mm.c.condition_id)
        .subquery()
    )
    oi = (
        sa.select(mm.c.condition_id, mm.c.open_interest)
        .join(latest, sa.and_(mm.c.condition_id == latest.c.condition_id, mm.c.ts == latest.c.ts))
        .subquery()
    )
    has_tokens = sa.exists().where(mt.c.condition_id == m.c.condition_id)
    stmt = (
        sa.select(m.c.condition_id, m.c.gamma_liquidity, m.c.gamma_volume, oi.c.open_interest)
        .select_from(m.outerjoin(oi, oi.c.condition_id == m.c.condition_id))
        .where(
            m.c.active.is_(True),
            sa.or_(m.c.closed.is_(False), m.c.closed.is_(None)),
            m.c.enable_order_book.is_(True),
            has_tokens,
        )
    )
    rows = [r._mapping for r in tx.execute(stmt)]
    return [
        Candidate(str(r["condition_id"]), r["gamma_liquidity"], r["gamma_volume"], r["open_interest"])
        for r in rows
    ]


def _tracked_token_set(tx: Tx) -> set[str]:
    return {str(row[0]) for row in tx.execute(_tracked_tokens_stmt())}


def _replace_auto(tx: Tx, manual: Sequence[str], chosen: Sequence[Candidate], now: datetime) -> None:
    """Rank manual rows 1..k, then replace every auto row by ``chosen``."""
    t = tracked_markets
    keep = [c.condition_id for c in chosen]
    stale = sa.delete(t).where(t.c.source == "auto")
    if keep:
        stale = stale.where(t.c.condition_id.not_in(keep))
    tx.execute(stale)
    if manual:
        rank_stmt = sa.update(t).where(t.c.condition_id == sa.bindparam("cid")).values(rank=sa.bindparam("r"))
        tx.execute(rank_stmt, [{"cid": cid, "r": i} for i, cid in enumerate(manual, 1)])
    rows = [
        {
            "condition_id": c.condition_id,
            "source": "auto",
            "rank": len(manual) + i,
            "score": c.score,
            "selected_at": now,
        }
        for i, c in enumerate(chosen, 1)
    ]
    # ``source`` is not updated: a market made manual meanwhile stays manual.
    tx.upsert(t, rows, update=["rank", "score"])


def refresh_tracked(store: Store, thresholds: Thresholds, now: datetime) -> UniverseChange:
    """Select the universe and replace the auto rows, in one transaction.

    Bumps the ``sync_state`` key ``"universe"`` (``version``, ``updated_at``, ``markets``,
    ``tokens``) when the set of markets or tokens changed since the last published version
    (kept under ``"universe:members"``), so a feed in another process can notice.
    Refreshes take turns (``polytape track add`` runs one beside the job's), so no two
    publish the same version.
    """

    def write(tx: Tx) -> UniverseChange:
        tx.lock("universe")
        t = tracked_markets
        published = tx.get_state(UNIVERSE_MEMBERS_KEY) or {}
        before_markets = set(published.get("condition_ids") or ())
        before_tokens = set(published.get("token_ids") or ())
        manual_stmt = (
            sa.select(t.c.condition_id)
            .where(t.c.source == "manual")
            .order_by(t.c.selected_at, t.c.condition_id)
        )
        manual = [str(v) for v in tx.execute(manual_stmt).scalars()]
        chosen = select_auto(_candidates(tx), manual, thresholds)
        _replace_auto(tx, manual, chosen, now)
        after_markets = set(manual) | {c.condition_id for c in chosen}
        after_tokens = _tracked_token_set(tx)
        state = tx.get_state(UNIVERSE_STATE_KEY) or {}
        version = int(state.get("version") or 0)
        change = UniverseChange(
            version=version,
            markets=len(after_markets),
            tokens=len(after_tokens),
            manual=len(manual),
            auto=len(chosen),
            markets_added=frozenset(after_markets - before_markets),
            markets_removed=frozenset(before_markets - after_markets),
            tokens_added=frozenset(after_tokens - before_tokens),
            tokens_removed=frozenset(before_tokens - after_tokens),
        )
        if change.changed or not state:
            version += 1
            value = {
                "version": version,
                "updated_at": now.isoformat(),
                "markets": change.markets,
                "tokens": change.tokens,
            }
            tx.set_state(UNIVERSE_STATE_KEY, value, now)
            members = {"condition_ids": sorted(after_markets), "token_ids": sorted(after_tokens)}
            tx.set_state(UNIVERSE_MEMBERS_KEY, members, now)
            change = replace(change, version=version)
        return change

    return store.write(write)


def universe_version(store: Store) -> int:
    """The universe version a feed last saw written (0 before the first refresh)."""
    state = store.get_state(UNIVERSE_STATE_KEY) or {}
    return int(state.get("version") or 0)
