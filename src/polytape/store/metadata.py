"""Batched, idempotent writes of Gamma metadata: events, markets, tokens, tags and links.

Every function takes an open :class:`Tx`, so a page of rows, its rejected items and the
cursor that covers them commit together. ``first_seen_at`` is written once and never
overwritten; a market's ``neg_risk`` set from a CLOB book (``neg_risk_source = 'clob'``)
survives later Gamma syncs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from polytape.normalize import Rejected
from polytape.normalize.gamma import SOURCE_MARKET, NormalizedPage, TagRecord
from polytape.store.bulk import ROWS, run_rows
from polytape.store.core import Tx
from polytape.store.runs import rejected_row
from polytape.store.schema import event_tags, events, market_tags, market_tokens, markets, tags

_IN_CHUNK = 500  # ids per IN (...) list: well under every engine's parameter limit

_EVENT_UPDATE = [c.name for c in events.columns if c.name not in ("event_id", "first_seen_at")]
_MARKET_UPDATE = [c.name for c in markets.columns if c.name not in ("condition_id", "first_seen_at")]


@dataclass(frozen=True)
class PageWrite:
    """What writing one page did."""

    events: int
    markets: int
    tokens: int
    links: int
    new_events: int
    new_markets: int
    rejected: int

    @property
    def rows(self) -> int:
        """Events, markets and tokens written (the job's ``rows_written``)."""
        return self.events + self.markets + self.tokens


def existing_keys(tx: Tx, column: sa.Column[Any], keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are already stored in ``column`` (one query per 500 keys)."""
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        found.update(str(v) for v in tx.execute(sa.select(column).where(column.in_(chunk))).scalars())
    return found


def _keep_clob_neg_risk(excluded: Any) -> Mapping[str, Any]:
    """Gamma's ``negRisk`` never replaces one the CLOB gave (reference: seed "Normalize negative risk")."""
    from_clob = markets.c.neg_risk_source == "clob"
    return {
        "neg_risk": sa.case((from_clob, markets.c.neg_risk), else_=excluded.neg_risk),
        "neg_risk_source": sa.case((from_clob, markets.c.neg_risk_source), else_=excluded.neg_risk_source),
    }


def write_events_page(tx: Tx, page: NormalizedPage, now: datetime, *, source_prefix: str = "") -> PageWrite:
    """Upsert a normalized page (events, markets, tokens, tags, links) and keep its rejects.

    New events and markets (not stored before this page) are counted with one query per
    500 keys. Links of the page's events and markets are replaced by what the page says.
    """
    page = _drop_gamma_id_conflicts(tx, page)
    event_ids = [e["event_id"] for e in page.events]
    condition_ids = [m["condition_id"] for m in page.markets]
    new_events = len(set(event_ids) - existing_keys(tx, events.c.event_id, event_ids))
    new_markets = len(set(condition_ids) - existing_keys(tx, markets.c.condition_id, condition_ids))

    tx.upsert(events, page.events, update=_EVENT_UPDATE)
    tx.upsert(markets, page.markets, update=_MARKET_UPDATE, set_exprs=_keep_clob_neg_risk)
    tx.upsert(market_tokens, page.tokens, update=["condition_id", "outcome", "outcome_index"])
    upsert_tags(tx, page.tags)
    links = _replace_links(tx, event_tags, event_tags.c.event_id, event_ids, page.event_tags)
    links += _replace_links(tx, market_tags, market_tags.c.condition_id, condition_ids, page.market_tags)
    rejected = tx.reject(
        [rejected_row(source_prefix + r.source, r.reason, r.raw, now) for r in page.rejected]
    )
    return PageWrite(
        events=len(set(event_ids)),
        markets=len(set(condition_ids)),
        tokens=len({t["token_id"] for t in page.tokens}),
        links=links,
        new_events=new_events,
        new_markets=new_markets,
        rejected=rejected,
    )


def _drop_gamma_id_conflicts(tx: Tx, page: NormalizedPage) -> NormalizedPage:
    """Reject markets whose Gamma id another market already holds (``gamma_market_id`` is unique).

    Without this, one such market would fail the whole page's transaction.
    """
    owners: dict[str, str] = {}
    ids = list(dict.fromkeys(m["gamma_market_id"] for m in page.markets))
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = sa.select(markets.c.gamma_market_id, markets.c.condition_id).where(
            markets.c.gamma_market_id.in_(ids[start : start + _IN_CHUNK])
        )
        rows: Any = tx.execute(stmt)
        owners.update({str(g): str(c) for g, c in rows})
    clashes: set[str] = set()
    for m in page.markets:
        owner = owners.setdefault(m["gamma_market_id"], m["condition_id"])
        if owner != m["condition_id"]:
            clashes.add(m["condition_id"])
    if not clashes:
        return page
    kept = [m for m in page.markets if m["condition_id"] not in clashes]
    rejected = [
        Rejected(
            SOURCE_MARKET,
            f"market {m['condition_id']}: gamma id {m['gamma_market_id']} already belongs to "
            f"{owners[m['gamma_market_id']]}",
            m,
        )
        for m in page.markets
        if m["condition_id"] in clashes
    ]
    return replace(
        page,
        markets=kept,
        tokens=[t for t in page.tokens if t["condition_id"] not in clashes],
        market_tags=[t for t in page.market_tags if t["condition_id"] not in clashes],
        rejected=page.rejected + rejected,
    )


def _replace_links(
    tx: Tx,
    table: sa.Table,
    owner: sa.Column[Any],
    owner_ids: Sequence[str],
    rows: Sequence[Mapping[str, str]],
) -> int:
    """Delete the owners' links, insert the given ones: the page is the truth about them."""
    owners = list(dict.fromkeys(owner_ids))
    for start in range(0, len(owners), _IN_CHUNK):
        tx.delete(table, owner.in_(owners[start : start + _IN_CHUNK]))
    return tx.insert_ignore(table, list({tuple(r.items()): r for r in rows}.values()))


def upsert_tags(tx: Tx, rows: Sequence[TagRecord]) -> int:
    """Insert or update tag labels and slugs; ``is_sport`` is left alone."""
    return tx.upsert(tags, rows, update=["label", "slug", "updated_at"])


def set_sport_tags(tx: Tx, sport_tag_ids: Iterable[str], now: datetime) -> int:
    """Make ``is_sport`` true exactly for ``sport_tag_ids``; returns how many tags are sports.

    An id the sports mapping names but ``/tags`` did not serve gets a row of its own
    (no label yet), so the mapping is never lost.
    """
    ids = sorted(set(sport_tag_ids))
    tx.insert_ignore(tags, [{"tag_id": t, "is_sport": True, "updated_at": now} for t in ids])
    sports = 0
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        stmt = sa.update(tags).where(tags.c.tag_id.in_(chunk)).values(is_sport=True)
        sports += int(tx.execute(stmt).rowcount or 0)
    others = sa.update(tags).where(tags.c.is_sport.is_(True))
    if ids:
        others = others.where(tags.c.tag_id.not_in(ids))
    tx.execute(others.values(is_sport=False, updated_at=now))
    return sports


def set_clob_neg_risk(tx: Tx, neg_risk_by_condition: Mapping[str, bool]) -> int:
    """Record the CLOB's ``neg_risk`` per market (``neg_risk_source = 'clob'``); one batched UPDATE.

    Markets not stored yet are skipped (the next Gamma sync brings them). Returns the
    number of markets updated.
    """
    params = [(cid, bool(value)) for cid, value in neg_risk_by_condition.items()]
    return run_rows(tx, sqlite_sql=_SET_NEG_RISK, pg_sql=_SET_NEG_RISK_PG, rows=params)


_SET_NEG_RISK = (
    "UPDATE markets SET neg_risk = v.column2, neg_risk_source = 'clob' "
    "FROM (VALUES " + ROWS + ") AS v WHERE markets.condition_id = v.column1"
)
_SET_NEG_RISK_PG = (
    "UPDATE markets SET neg_risk = v.nr, neg_risk_source = 'clob' "
    "FROM unnest(%s::text[], %s::bool[]) AS v(cid, nr) WHERE markets.condition_id = v.cid"
)


def retire_unlisted(tx: Tx, listed_event_ids: Iterable[str], now: datetime) -> int:
    """After a complete sync of active, open events: events (and their open markets) that were
    not listed have closed or gone inactive at the venue; mark them inactive. Returns markets retired.
    """
    listed = set(listed_event_ids)
    e, m = events, markets
    open_events = tx.execute(sa.select(e.c.event_id).where(e.c.active.is_(True))).scalars()
    gone_events = sorted(str(v) for v in open_events if str(v) not in listed)
    stmt = sa.select(m.c.condition_id, m.c.event_id).where(
        m.c.active.is_(True), sa.or_(m.c.closed.is_(False), m.c.closed.is_(None))
    )
    rows: list[Any] = list(tx.execute(stmt))
    gone_markets = sorted(str(r[0]) for r in rows if r[1] is None or str(r[1]) not in listed)
    for start in range(0, len(gone_events), 1000):
        chunk = gone_events[start : start + 1000]
        tx.execute(sa.update(e).where(e.c.event_id.in_(chunk)).values(active=False, updated_at=now))
    for start in range(0, len(gone_markets), 1000):
        chunk = gone_markets[start : start + 1000]
        tx.execute(sa.update(m).where(m.c.condition_id.in_(chunk)).values(active=False, updated_at=now))
    return len(gone_markets)
