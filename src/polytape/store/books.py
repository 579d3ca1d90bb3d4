"""The current order books in the store: ``orderbooks`` (one row per token) and
``orderbook_levels`` (exactly the levels the book state holds).

Writes take an open :class:`Tx` so one flush of many books is one transaction:
:func:`write_books` applies level diffs (WS flushes) or replaces a token's levels
(REST snapshots, first writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from polytape.books import BookDiff, OrderBook
from polytape.store.core import Tx
from polytape.store.metadata import set_clob_neg_risk
from polytape.store.schema import orderbook_levels, orderbooks

_IN_CHUNK = 500
_BOOK_UPDATE = [c.name for c in orderbooks.columns if c.name != "token_id"]


def _num(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def book_row(book: OrderBook, now: datetime) -> dict[str, Any]:
    """The ``orderbooks`` row of a book; unknown REST-only fields are left out (kept as stored)."""
    row: dict[str, Any] = {
        "token_id": book.token_id,
        "condition_id": book.condition_id or None,
        "book_ts": book.updated_at,
        "hash": book.hash or None,
        "hash_status": book.checked_status,
        "best_bid": book.best_bid,
        "best_ask": book.best_ask,
        "last_trade_price": _num(book.last_trade_price),
        "source": book.source,
        "updated_at": now,
        "snapshot_at": book.snapshot_at,
    }
    if book.tick_size is not None:
        row["tick_size"] = _num(book.tick_size)
    if book.min_order_size is not None:
        row["min_order_size"] = _num(book.min_order_size)
    if book.neg_risk is not None:
        row["neg_risk"] = book.neg_risk
    return row


@dataclass
class BookWrite:
    """One flush: headers of changed books, their level diffs and the CLOB's neg_risk."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[BookDiff] = field(default_factory=list)
    neg_risk: dict[str, bool] = field(default_factory=dict)

    def add(self, book: OrderBook, now: datetime) -> None:
        """Queue a book's header and (if any) its level diff."""
        self.rows.append(book_row(book, now))
        diff = book.take_diff()
        if diff is not None:
            self.diffs.append(diff)
        if book.neg_risk is not None and book.condition_id:
            self.neg_risk[book.condition_id] = book.neg_risk
        book.meta_dirty = False

    def __bool__(self) -> bool:
        return bool(self.rows or self.diffs)


def write_books(tx: Tx, batch: BookWrite, now: datetime) -> int:
    """Apply one flush in ``tx``; returns the level rows written or deleted.

    Full diffs replace every stored level of their token; the others upsert changed
    levels and delete removed ones, all as batched statements.
    """
    tx.upsert(orderbooks, batch.rows, update=_BOOK_UPDATE)
    full = [d.token_id for d in batch.diffs if d.full]
    for start in range(0, len(full), _IN_CHUNK):
        tx.delete(orderbook_levels, orderbook_levels.c.token_id.in_(full[start : start + _IN_CHUNK]))
    upserts = [
        {"token_id": d.token_id, "side": side, "price": price, "size": size, "updated_at": now}
        for d in batch.diffs
        for side, price, size in d.upserts
    ]
    deletes = [
        {"t": d.token_id, "s": side, "p": price}
        for d in batch.diffs
        if not d.full
        for side, price in d.deletes
    ]
    tx.upsert(orderbook_levels, upserts, update=["size", "updated_at"])
    if deletes:
        lv = orderbook_levels.c
        stmt = sa.delete(orderbook_levels).where(
            lv.token_id == sa.bindparam("t"), lv.side == sa.bindparam("s"), lv.price == sa.bindparam("p")
        )
        tx.execute(stmt, deletes)
    if batch.neg_risk:
        set_clob_neg_risk(tx, batch.neg_risk)
    return len(upserts) + len(deletes)


def delete_books(tx: Tx, token_ids: Sequence[str]) -> int:
    """Forget the stored books of tokens that left the universe; returns headers deleted."""
    ids = list(dict.fromkeys(token_ids))
    deleted = 0
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        tx.delete(orderbook_levels, orderbook_levels.c.token_id.in_(chunk))
        deleted += tx.delete(orderbooks, orderbooks.c.token_id.in_(chunk))
    return deleted
