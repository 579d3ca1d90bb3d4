"""The one error tree of polytape.

Foreign errors (httpx, websockets, SQLAlchemy, JSON decoders) are translated once,
at the edge, into these types. ``retryable`` says whether trying again may help.
"""

from __future__ import annotations

# Exit codes of every polytape command (defined here only; ``polytape.cli`` maps errors to them).
EXIT_OK = 0
EXIT_FAIL = 1  # a runtime failure
EXIT_USAGE = 2  # bad usage or configuration
EXIT_INTERRUPTED = 130  # Ctrl-C


class PolytapeError(Exception):
    """Root of every error polytape raises on purpose."""

    retryable: bool = False


class ConfigError(PolytapeError):
    """A setting is missing or has a bad value (CLI exit code 2)."""


class PayloadError(PolytapeError):
    """A payload could not be decoded or did not have the expected shape.

    ``raw`` is the start of the answer (empty when there is none to keep), so that the
    job can keep it once in ``rejected_payloads``.
    """

    raw: str = ""


class BackfillFailed(PolytapeError):
    """A backfill stopped on an error; what it stored is kept and the same command resumes."""


class StoreError(PolytapeError):
    """The database refused or lost a write."""

    retryable = True


class DatabaseUnavailable(StoreError):
    """The database cannot be reached now (down, restarting, unknown host): may pass."""


class DatabaseRefused(StoreError):
    """An error that waiting will not fix: read-only file, full disk, missing table,
    missing database, wrong role or password. Fails at once (CLI exit code 1)."""

    retryable = False


class StoreStopping(StoreError):
    """A write was abandoned because polytape is stopping and the database is not answering."""

    retryable = False


class ApiError(PolytapeError):
    """An HTTP API answered with an error, or could not be reached.

    ``detail`` is the server's own message (the JSON ``error`` field or an HTML page's
    title); ``retry_after`` is the server's hint in seconds, when it gave one.
    """

    detail: str = ""
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body


class ClientError(ApiError):
    """A 4xx answer other than 429: our request is wrong; retrying will not help."""


class OffsetCapExceeded(ClientError):
    """The Data API refused an offset past its historical cap; slice by time instead."""


class ServerError(ApiError):
    """A 5xx answer; worth retrying."""

    retryable = True


class RateLimited(ApiError):
    """A 429 (or a Cloudflare rate-limit page); slow down and retry."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class TransportError(ApiError):
    """Connection refused/reset, DNS failure or timeout."""

    retryable = True


class ResponseTooLarge(ApiError):
    """The response body was larger than the configured cap (``raw``: its first bytes)."""

    raw: str = ""


class RetriesExhausted(ApiError):
    """Every attempt failed; ``last_error`` is the final one."""

    def __init__(self, message: str, *, last_error: ApiError, attempts: int) -> None:
        super().__init__(message, url=last_error.url, status=last_error.status, body=last_error.body)
        self.last_error = last_error
        self.attempts = attempts
