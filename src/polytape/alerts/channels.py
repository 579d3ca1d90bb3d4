"""One alert channel: an Apprise URL, its filters, and a blocking ``send``.

Apprise speaks Telegram, Discord, Slack, email, ntfy, JSON webhooks and many more; it
is synchronous, so the dispatcher calls :meth:`Channel.send` in a worker thread. The
URL holds secrets (bot tokens, webhook paths): logs and the delivery log only ever see
:attr:`Channel.name`: Apprise's privacy rendering with path and query hidden.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polytape.config import AlertSpec
from polytape.errors import ConfigError
from polytape.redact import redact_urls

MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None


class Channel:
    """Where alerts of one ``POLYTAPE_ALERT_URLS`` entry go."""

    def __init__(self, spec: AlertSpec, known_types: frozenset[str]) -> None:
        unknown = spec.types - known_types
        if unknown:
            raise ConfigError(
                f"POLYTAPE_ALERT_URLS: unknown signal type(s) {', '.join(sorted(unknown))}; "
                f"types: {', '.join(sorted(known_types))}"
            )
        import apprise  # loaded only when an alert channel is configured (it is a large import)

        plugin = apprise.Apprise.instantiate(spec.url)
        if plugin is None:
            scheme = spec.url.split("://", 1)[0]
            raise ConfigError(f"POLYTAPE_ALERT_URLS: Apprise does not understand a {scheme}:// URL")
        self.spec = spec
        # A stable key that identifies the URL without revealing it, and a name to show:
        # Apprise's privacy rendering with any path or query hidden, plus the key's start.
        self.key = hashlib.sha256(spec.url.encode()).hexdigest()[:16]
        shown = redact_urls(str(plugin.url(privacy=True)))  # type: ignore[no-untyped-call]
        self.name = f"{shown[:200]} [{self.key[:6]}]"
        self._apprise: Any = apprise.Apprise()
        self._apprise.add(plugin)

    def wants(self, row: Mapping[str, Any]) -> bool:
        """True when this channel's filters (type, minimum score) accept the signal."""
        if self.spec.types and row.get("signal_type") not in self.spec.types:
            return False
        if self.spec.min_score is not None:
            score = row.get("score")
            return score is not None and float(score) >= self.spec.min_score
        return True

    def send(self, title: str, body: str) -> Outcome:
        """Deliver one message (blocking); never raises."""
        problems: list[str] = []

        def collect(entry: Any, _plugin: Any = None) -> None:
            problems.append(str(getattr(entry, "message", entry)))

        try:
            result = self._apprise.notify(body=body, title=title, log_callback=collect)
        except Exception as exc:  # a plugin bug must not take the dispatcher down
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        if result:
            return Outcome(True)
        return Outcome(False, ("; ".join(problems) or "delivery failed")[:MAX_ERROR_CHARS])
