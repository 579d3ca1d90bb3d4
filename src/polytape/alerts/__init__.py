"""Alerts through Apprise: filters, per-market rate limits with digests, a delivery log.

:func:`build_dispatcher` makes the process's :class:`AlertDispatcher` from the settings
(``POLYTAPE_ALERT_URLS`` and the old ``POLYTAPE_SIGNAL_WEBHOOK_URL`` as a JSON URL), or
None when no channel is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from polytape.alerts.channels import Channel
from polytape.alerts.dispatcher import AlertDispatcher
from polytape.config import Settings
from polytape.signals.model import SIGNAL_TYPES
from polytape.store import Store

__all__ = ["AlertDispatcher", "Channel", "build_dispatcher"]


def build_dispatcher(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
) -> AlertDispatcher | None:
    """The dispatcher for the configured channels (ConfigError on a URL Apprise refuses)."""
    specs = settings.alert_specs()
    if not specs:
        return None
    channels = [Channel(spec, frozenset(SIGNAL_TYPES)) for spec in specs]
    return AlertDispatcher(
        store,
        channels,
        max_per_hour=settings.alert_max_per_hour,
        max_attempts=settings.alert_max_attempts,
        retry_base_seconds=settings.alert_retry_base_seconds,
        horizon=timedelta(minutes=settings.alert_horizon_minutes),
        clock=clock or (lambda: datetime.now(UTC)),
    )
