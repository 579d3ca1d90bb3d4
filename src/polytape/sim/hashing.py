"""The CLOB order-book hash (reference.md §3.6).

SHA-1 over a compact JSON object of exactly ten keys in a fixed order, with
``hash`` set to the empty string and every other value exactly as served:
level strings verbatim, bids ascending, asks descending, ``neg_risk`` a JSON bool.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

Level = Mapping[str, str]


def book_hash(
    market: str,
    asset_id: str,
    timestamp: str,
    bids: Sequence[Level],
    asks: Sequence[Level],
    min_order_size: str,
    tick_size: str,
    neg_risk: bool,
    last_trade_price: str,
) -> str:
    """Return the 40-hex SHA-1 book hash Polymarket serves for these values."""
    payload = {
        "market": market,
        "asset_id": asset_id,
        "timestamp": timestamp,
        "hash": "",
        "bids": [{"price": lvl["price"], "size": lvl["size"]} for lvl in bids],
        "asks": [{"price": lvl["price"], "size": lvl["size"]} for lvl in asks],
        "min_order_size": min_order_size,
        "tick_size": tick_size,
        "neg_risk": neg_risk,
        "last_trade_price": last_trade_price,
    }
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def hash_of_payload(book: Mapping[str, object], *, min_order_size: str = "5", neg_risk: bool = False) -> str:
    """Hash a served book payload (REST or WS ``book``).

    WS ``book`` messages lack ``min_order_size`` and ``neg_risk``; the keywords
    supply them (they come from REST ``/book`` in real clients).
    """

    def levels(key: str) -> list[Level]:
        raw = book.get(key, [])
        assert isinstance(raw, list)
        return [dict(lvl) for lvl in raw]

    neg = book.get("neg_risk", neg_risk)
    return book_hash(
        market=str(book["market"]),
        asset_id=str(book["asset_id"]),
        timestamp=str(book["timestamp"]),
        bids=levels("bids"),
        asks=levels("asks"),
        min_order_size=str(book.get("min_order_size", min_order_size)),
        tick_size=str(book.get("tick_size", "")),
        neg_risk=bool(neg),
        last_trade_price=str(book.get("last_trade_price", "")),
    )
