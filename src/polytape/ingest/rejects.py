"""Bad input of one page: capped rows and capped log lines (lessons.md #15)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polytape import metrics
from polytape.errors import ApiError, PayloadError
from polytape.normalize import REJECTS_KEPT_PER_PAGE, Rejected, cap_rejected

RAW_CHARS = 64_000  # what is kept of a bad answer (a page that is not JSON, too large, …)


def cap_and_log(log: Any, event: str, rejected: list[Rejected], total: int) -> list[Rejected]:
    """A page's rejects capped (:func:`polytape.normalize.cap_rejected`), and logged with at
    most ``REJECTS_KEPT_PER_PAGE`` lines plus one summary line; the metric counts them all."""
    if not rejected:
        return rejected
    log_rejects(log, event, rejected, bad=len(rejected))
    return cap_rejected(rejected, total, rejected[0].source)


def log_rejects(log: Any, event: str, rejected: Sequence[Rejected], *, bad: int | None = None) -> None:
    """One line per kept reject, then one summary line for the rest; counts every bad item."""
    bad = len(rejected) if bad is None else bad
    for item in list(rejected)[:REJECTS_KEPT_PER_PAGE]:
        log.warning(event, source=item.source, reason=item.reason[:300])
    if bad > REJECTS_KEPT_PER_PAGE:
        log.warning(f"{event}: more on this page", more=bad - REJECTS_KEPT_PER_PAGE, total_rejected=bad)
    if rejected:
        metrics.REJECTED_PAYLOADS.labels(source=rejected[0].source).inc(bad)


def bad_answer(exc: ApiError | PayloadError, source: str) -> Rejected | None:
    """The reject that keeps an answer that could not be used (once), or None when there
    is no body to keep (a timeout, a refused connection)."""
    raw = getattr(exc, "raw", "") or ""
    if not raw:
        return None
    return Rejected(source, str(exc)[:2000], raw[:RAW_CHARS])
