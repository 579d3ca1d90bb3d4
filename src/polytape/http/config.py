"""Knobs of the HTTP layer, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from polytape.config import Settings


@dataclass(frozen=True)
class HttpConfig:
    """Knobs of the HTTP layer; one object built from the settings and passed down."""

    timeout: float = 15.0
    connect_timeout: float = 5.0
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_concurrency: int = 8
    max_response_bytes: int = 50_000_000
    user_agent: str = "polytape/0.1"
    attempt_timeout: float = 60.0
    """Deadline for one whole attempt (headers and body), against bodies that trickle
    (``POLYTAPE_HTTP_DEADLINE_SECONDS``); ``timeout`` only bounds the gap between reads."""
    retry_after_max: float = 300.0
    """A server's Retry-After longer than this is cut to this."""
    recover_after: int = 10
    """Consecutive successes before a throttled host's concurrency grows by one."""
    throttle_cooldown: float = 60.0
    """How long after its last 429 a host still counts as throttled."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpConfig:
        """The HTTP knobs of ``settings`` (``http_*``)."""
        return cls(
            timeout=settings.http_timeout_seconds,
            max_retries=settings.http_max_retries,
            backoff_base=settings.http_backoff_base_seconds,
            backoff_max=settings.http_backoff_max_seconds,
            max_concurrency=settings.http_max_concurrency,
            max_response_bytes=int(settings.http_max_response_mb * 1_000_000),
            attempt_timeout=settings.http_deadline_seconds,
        )
