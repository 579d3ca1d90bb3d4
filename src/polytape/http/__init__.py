"""The HTTP layer every REST client shares (the only package besides ``clients/`` that imports httpx).

- :mod:`.config`: :class:`HttpConfig`, the knobs, built once from the settings.
- :mod:`.throttle`: :class:`HostThrottle`, the adaptive per-host limiter (AIMD, 429 pauses).
- :mod:`.client`: :class:`HttpSession` (per-host throttles) and :class:`HttpClient`
  (JSON to one base URL with retries, a size cap and deadlines).
- :mod:`.responses`: pure helpers: query encoding, JSON decoding, error classification.

Imports: :mod:`polytape.config`, :mod:`polytape.errors`, :mod:`polytape.metrics` only.
"""

from polytape.http.client import HttpClient, HttpSession, JsonResponse, RequestTally, count_requests
from polytape.http.config import HttpConfig
from polytape.http.responses import (
    decode_json,
    encode_params,
    error_from_response,
    excerpt,
    expect_dict,
    expect_list,
    host_key,
    parse_retry_after,
)
from polytape.http.throttle import HostThrottle

__all__ = [
    "HostThrottle",
    "HttpClient",
    "HttpConfig",
    "HttpSession",
    "JsonResponse",
    "RequestTally",
    "count_requests",
    "decode_json",
    "encode_params",
    "error_from_response",
    "excerpt",
    "expect_dict",
    "expect_list",
    "host_key",
    "parse_retry_after",
]
