"""Pure functions from raw API payloads to typed records: no I/O, no clock reads.

``gamma`` (events, markets, tokens, tags), ``trades`` (both trade feeds), ``open_interest``,
``books`` (WebSocket frames and REST books). Whatever cannot be normalized becomes one
:class:`Rejected` record with its reason; a malformed item raises a :class:`PayloadError`
subclass inside the normalizer. Imports: errors only; never store, http or clients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that could not be normalized: where it came from (or what kind of item it
    was: ``gamma:event``, ``unknown_event:foo``), why, and the item itself.

    The one record of a rejected item for every normalizer (Gamma, trades, books).
    """

    source: str
    reason: str
    raw: Any


REJECTS_KEPT_PER_PAGE = 20
"""Bad items of one page kept (and logged) one by one; the rest are summarised."""
SUMMARY_RAW_CHARS = 64_000
"""How much of a mostly-bad page its summary reject keeps."""


def cap_rejected(
    rejected: list[Rejected], total: int, source: str, *, keep: int = REJECTS_KEPT_PER_PAGE
) -> list[Rejected]:
    """At most ``keep`` of a page's rejects, plus one summary when there were more.

    A hostile page of millions of junk items must not become millions of rows and log
    lines: the first ``keep`` bad items are kept as they are, and the others become one
    reject whose reason counts them (``N of TOTAL items rejected``) and whose raw text is
    the start of those items, cut at ``SUMMARY_RAW_CHARS``.
    """
    if len(rejected) <= keep:
        return rejected
    rest = rejected[keep:]
    summary = Rejected(
        source,
        f"{len(rejected)} of {total} items on the page rejected; {len(rest)} more are summarised here "
        f"(first reason: {rest[0].reason[:200]})",
        truncated_json([r.raw for r in rest], SUMMARY_RAW_CHARS),
    )
    return [*rejected[:keep], summary]


def truncated_json(items: list[Any], limit: int) -> str:
    """``items`` as a JSON array, cut after about ``limit`` characters (no full dump first)."""
    parts: list[str] = []
    size = 0
    for item in items:
        try:
            text = json.dumps(item, default=str)
        except (TypeError, ValueError, RecursionError):
            text = json.dumps(repr(item)[:1000])
        if size + len(text) > limit:
            parts.append(f'"… {len(items) - len(parts)} more"')
            break
        parts.append(text)
        size += len(text) + 2
    return "[" + ", ".join(parts) + "]"
