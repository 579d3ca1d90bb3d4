"""Which stored signals are news: the alert horizon.

A signal is delivered as an alert (webhook, Apprise, …) only when what it is about
happened within the horizon (``POLYTAPE_ALERT_HORIZON_MINUTES``). On a fresh database
the first passes find signals in the history the jobs just loaded; those are stored
in ``signal_events`` like any other, but an alert about a trade an hour old is not
news, and firing hundreds of them at once is a flood. Every alert sink should call
:func:`is_news` on a ``signal_events`` row before delivering it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# The payload field holding the time of what the signal is about, newest first.
_EVENT_TIME_FIELDS = ("trade_ts", "last_trade_ts", "to_ts", "ts")


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def signal_event_time(row: Mapping[str, Any]) -> datetime | None:
    """When the thing a signal is about happened: the trade's time for trade signals,
    the newest price or snapshot for moves and OI changes, else ``detected_at``."""
    payload = row.get("payload")
    if isinstance(payload, Mapping):
        for key in _EVENT_TIME_FIELDS:
            when = _as_datetime(payload.get(key))
            if when is not None:
                return when
    return _as_datetime(row.get("detected_at"))


def is_news(row: Mapping[str, Any], now: datetime, horizon: timedelta) -> bool:
    """True when the signal ``row`` (a ``signal_events`` row) should be delivered as an
    alert at ``now``: its event time is no older than ``horizon``. A row without any
    time is not news (it cannot be shown to be recent)."""
    when = signal_event_time(row)
    return when is not None and now - when <= horizon
