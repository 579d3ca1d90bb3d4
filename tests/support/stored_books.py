"""Reading stored order books back, for tests and benchmarks (polytape itself never does).

:func:`latest_books` and :func:`stored_book` return :class:`StoredBook` values: the
``orderbooks`` header row and the ``orderbook_levels``, best first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from polytape.store import Store
from polytape.store.schema import orderbook_levels, orderbooks

_IN_CHUNK = 500


@dataclass(frozen=True)
class StoredBook:
    """A book as stored: the header row and the levels, best first."""

    token_id: str
    header: Mapping[str, Any]
    bids: list[tuple[float, float]]  # (price, size), high → low
    asks: list[tuple[float, float]]  # (price, size), low → high

    @property
    def best_bid(self) -> float | None:
        """Best bid from the levels."""
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> float | None:
        """Best ask from the levels."""
        return self.asks[0][0] if self.asks else None


def _read_books(
    conn: sa.Connection, token_ids: Sequence[str], since: datetime | None
) -> dict[str, StoredBook]:
    ob, lv = orderbooks, orderbook_levels
    headers: dict[str, dict[str, Any]] = {}
    levels: dict[str, list[tuple[str, float, float]]] = {}
    for start in range(0, len(token_ids), _IN_CHUNK):
        chunk = list(token_ids[start : start + _IN_CHUNK])
        stmt = sa.select(ob).where(ob.c.token_id.in_(chunk))
        if since is not None:
            stmt = stmt.where(ob.c.updated_at >= since)
        for r in conn.execute(stmt):
            headers[r.token_id] = dict(r._mapping)
        found = [t for t in chunk if t in headers]
        if not found:
            continue
        rows = conn.execute(
            sa.select(lv.c.token_id, lv.c.side, lv.c.price, lv.c.size).where(lv.c.token_id.in_(found))
        )
        for tok, side, price, size in rows:
            levels.setdefault(tok, []).append((side, price, size))
    out: dict[str, StoredBook] = {}
    for tok, header in headers.items():
        mine = levels.get(tok, [])
        bids = sorted(((p, s) for side, p, s in mine if side == "BUY"), reverse=True)
        asks = sorted((p, s) for side, p, s in mine if side == "SELL")
        out[tok] = StoredBook(tok, header, bids, asks)
    return out


def stored_book(store: Store, token_id: str) -> StoredBook | None:
    """The stored book of one token, or None."""
    return store.read(lambda c: _read_books(c, [token_id], None)).get(token_id)


def latest_books(
    source: Store | sa.Connection,
    token_ids: Iterable[str],
    max_age: timedelta | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, StoredBook]:
    """Stored books of ``token_ids`` updated within ``max_age`` of ``now`` (all if no age)."""
    tokens = list(dict.fromkeys(token_ids))
    since = None
    if max_age is not None:
        if now is None:
            raise ValueError("latest_books needs now= with max_age")
        since = now - max_age
    if isinstance(source, Store):
        return source.read(lambda c: _read_books(c, tokens, since))
    return _read_books(source, tokens, since)
