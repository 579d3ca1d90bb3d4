"""``sync_tag_metadata``: Gamma ``/tags`` labels and slugs, and ``is_sport`` from ``/sports``.

Tags are paged with ``limit``/``offset`` until a short page. ``is_sport`` is true for
exactly the tag ids the ``/sports`` mapping names (its ``tags`` field is a comma string
with stray spaces and trailing commas). If ``/sports`` fails, the tags are still stored
and ``is_sport`` is left as it was (run ``partial``).
"""

from __future__ import annotations

from typing import Any

import structlog

from polytape import metrics
from polytape.errors import ApiError, PayloadError
from polytape.jobs.base import JobContext, JobResult
from polytape.normalize import Rejected
from polytape.normalize.gamma import GammaPayloadError, TagRecord, normalize_tag, sport_tag_ids
from polytape.store.core import Tx
from polytape.store.metadata import set_sport_tags, upsert_tags
from polytape.store.runs import rejected_row

log = structlog.get_logger("polytape.jobs.sync_tag_metadata")

TAGS_PAGE_SIZE = 100
TAGS_MAX_PAGES = 200  # 20,000 tags; Gamma has a few thousand


async def _fetch_tags(ctx: JobContext, result: JobResult) -> list[dict[str, Any]]:
    """Every ``/tags`` row (what was fetched before a failure is kept, run ``partial``)."""
    rows: list[dict[str, Any]] = []
    for page in range(TAGS_MAX_PAGES):
        try:
            batch = await ctx.clients.gamma.tags(limit=TAGS_PAGE_SIZE, offset=page * TAGS_PAGE_SIZE)
        except (ApiError, PayloadError) as exc:
            result.partial(f"/tags page {page + 1} failed: {exc}")
            return rows
        rows.extend(batch)
        if len(batch) < TAGS_PAGE_SIZE:
            return rows
    result.partial(f"stopped after {TAGS_MAX_PAGES} pages of /tags")
    return rows


def _normalize_tags(
    raw_tags: list[dict[str, Any]], ctx: JobContext
) -> tuple[list[TagRecord], list[Rejected]]:
    now = ctx.clock()
    records: dict[str, TagRecord] = {}
    rejected: list[Rejected] = []
    for raw in raw_tags:
        try:
            tag = normalize_tag(raw, now)
        except GammaPayloadError as exc:
            rejected.append(Rejected("gamma:tag", f"tag: {exc}", raw))
            continue
        records[tag["tag_id"]] = tag
    return list(records.values()), rejected


async def run(ctx: JobContext) -> JobResult:
    """Upsert every tag and mark the sports tags."""
    result = JobResult()
    tags, rejected = _normalize_tags(await _fetch_tags(ctx, result), ctx)
    sport_ids: set[str] | None = None
    try:
        sport_ids, bad_sports = sport_tag_ids(await ctx.clients.gamma.sports())
        rejected += bad_sports
    except (ApiError, PayloadError) as exc:
        result.partial(f"/sports failed, is_sport left unchanged: {exc}")
    for item in rejected:
        log.warning("gamma item rejected", source=item.source, reason=item.reason)
        metrics.REJECTED_PAYLOADS.labels(source=item.source).inc()
    now = ctx.clock()

    def write(tx: Tx) -> int:
        upsert_tags(tx, tags)
        tx.reject([rejected_row(r.source, r.reason, r.raw, now) for r in rejected])
        return set_sport_tags(tx, sport_ids, now) if sport_ids is not None else -1

    sports = await ctx.store.awrite(write)
    metrics.ROWS_WRITTEN.labels(table="tags").inc(len(tags))
    result.rows_written = len(tags)
    result.details.update(tags=len(tags), rejected=len(rejected))
    if sports >= 0:
        result.details["sport_tags"] = sports
    return result
