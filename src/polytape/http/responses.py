"""Pure helpers of the HTTP layer: query encoding, JSON decoding, error classification.

Nothing here does I/O: a complete answer (status, headers, body) goes in, a decoded value
or an error of the :mod:`polytape.errors` tree comes out.
"""

from __future__ import annotations

import email.utils
import html
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from polytape.errors import (
    ApiError,
    ClientError,
    PayloadError,
    RateLimited,
    ResponseTooLarge,
    ServerError,
)

ERROR_BODY_BYTES = 64_000  # error pages are read this far, then truncated
_EXCERPT_CHARS = 200
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_CLOUDFLARE_RATE_MARKERS = ("1015", "rate limit", "access denied", "too many requests")


RAW_KEPT_BYTES = 64_000
"""How much of an answer that could not be used travels with its error, to be kept."""


def too_large(url: str, status: int, what: str, head: bytes = b"") -> ResponseTooLarge:
    error = ResponseTooLarge(f"response from {url} {what}, over the size cap", url=url, status=status)
    error.raw = head[:RAW_KEPT_BYTES].decode("utf-8", "replace")
    return error


def host_key(base_url: str) -> str:
    """``host[:port]`` of a URL: the key throttles and metrics use."""
    url = httpx.URL(base_url)
    return f"{url.host}:{url.port}" if url.port else url.host


def encode_params(params: Mapping[str, Any] | None) -> dict[str, str | list[str]]:
    """Query parameters as the APIs expect: None dropped, booleans lower-case, lists repeated."""
    encoded: dict[str, str | list[str]] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            encoded[key] = [_param_text(item) for item in value]
        else:
            encoded[key] = _param_text(value)
    return encoded


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decode_json(body: bytes, url: str) -> Any:
    """Decode a 2xx body (empty → None); anything else is a :class:`PayloadError` naming the URL."""
    if not body.strip():
        return None
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError) as exc:
        # RecursionError: JSON nested deeper than the decoder's stack (a hostile answer).
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        error = PayloadError(f"response from {url} is not valid JSON ({reason}): {excerpt(body)!r}")
        error.raw = body[:RAW_KEPT_BYTES].decode("utf-8", "replace")
        raise error from None


def expect_list(data: Any, url: str) -> list[Any]:
    """``data`` if it is a JSON array, else a :class:`PayloadError`."""
    if not isinstance(data, list):
        raise PayloadError(f"expected a JSON array from {url}, got {type(data).__name__}")
    return data


def expect_dict(data: Any, url: str) -> dict[str, Any]:
    """``data`` if it is a JSON object, else a :class:`PayloadError`."""
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object from {url}, got {type(data).__name__}")
    return data


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, url: str, retry_after_max: float = math.inf
) -> ApiError:
    """Classify a non-2xx answer into the error tree, with the server's message as ``detail``."""
    text = body.decode("utf-8", errors="replace")
    detail, hinted = _json_error(body)
    page = _looks_like_html(headers, text)
    if detail is None:
        detail = excerpt(body)
    retry_after = parse_retry_after(headers.get("retry-after"))
    retry_after = retry_after if retry_after is not None else hinted
    if retry_after is not None:
        retry_after = min(retry_after, retry_after_max)
    kind = "Cloudflare page" if page and _is_cloudflare(headers, text) else "error"
    message = f"HTTP {status} {kind} from {url}: {detail}"
    error: ApiError
    if status == 429 or (kind == "Cloudflare page" and _is_rate_limit_page(status, detail, text)):
        error = RateLimited(message, retry_after=retry_after, url=url, status=status, body=text[:2000])
    elif status >= 500:
        error = ServerError(message, url=url, status=status, body=text[:2000])
        error.retry_after = retry_after
    else:
        error = ClientError(message, url=url, status=status, body=text[:2000])
    error.detail = detail
    return error


def _json_error(body: bytes) -> tuple[str | None, float | None]:
    """The ``error`` (or ``message``/``detail``) text and ``retry_after_seconds`` of a JSON body."""
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return excerpt(body), None
    message = next((data[k] for k in ("error", "message", "detail") if data.get(k)), None)
    hinted = data.get("retry_after_seconds")
    seconds = float(hinted) if isinstance(hinted, int | float) and not isinstance(hinted, bool) else None
    return (str(message) if message is not None else excerpt(body)), seconds


def _looks_like_html(headers: Mapping[str, str], text: str) -> bool:
    head = text.lstrip()[:100].lower()
    return "text/html" in headers.get("content-type", "") or head.startswith(("<!doctype html", "<html"))


def _is_cloudflare(headers: Mapping[str, str], text: str) -> bool:
    server = headers.get("server", "").lower()
    return server == "cloudflare" or "cf-ray" in headers or "cloudflare" in text.lower()


def _is_rate_limit_page(status: int, title: str, text: str) -> bool:
    """A Cloudflare 403 or 1015 ("Access denied", rate limited) page: slow down, retry."""
    lowered = title.lower()
    return (
        status == 403
        or "error 1015" in text.lower()
        or any(marker in lowered for marker in _CLOUDFLARE_RATE_MARKERS)
    )


def excerpt(body: bytes, limit: int = _EXCERPT_CHARS) -> str:
    """A short human-readable excerpt of a body: an HTML page's <title>, else its first text."""
    text = body.decode("utf-8", errors="replace")
    title = _TITLE_RE.search(text)
    if title:
        text = title.group(1)
    elif text.lstrip().startswith("<"):
        text = _TAG_RE.sub(" ", text)
    text = " ".join(html.unescape(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
