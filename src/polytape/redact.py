"""Keep secrets in URLs out of logs and error lines.

Webhook and alert URLs carry their token in the path (``/services/T…/B…/secret``,
``/bot<token>/…``) or the query (``?key=…``); database URLs carry a password. Every
log line and every one-line error passes through :func:`redact_urls`, which keeps a
URL's scheme, host and port (enough to tell which service failed) and replaces its
path and query with ``/…``, and a password with ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

# scheme://[user[:password]@]host[:port][/path][?query][#fragment]
_URL_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)"
    r"(?:(?P<user>[^\s/@:'\"<>]*)(?::(?P<password>[^\s/@'\"<>]*))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/?#:'\"<>,;)]*)"
    r"(?P<port>:[^\s/?#'\"<>,;)]*)?"
    r"(?P<rest>[/?#][^\s'\"<>,;)]*)?"
)


def _replace(match: re.Match[str]) -> str:
    user = match.group("user")
    auth = ""
    if user is not None:
        auth = f"{user}:***@" if match.group("password") is not None else f"{user}@"
    rest = match.group("rest") or ""
    rest = rest if rest in ("", "/", "?", "#") else "/…"
    return f"{match.group('scheme')}{auth}{match.group('host')}{match.group('port') or ''}{rest}"


def redact_urls(text: str) -> str:
    """``text`` with every URL's path, query and password hidden."""
    if "://" not in text:
        return text
    return _URL_RE.sub(_replace, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return redact_urls(f"{type(value).__name__}: {value}")
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: :func:`redact_urls` on every value of a log line."""
    return {key: _redact_value(value) for key, value in event_dict.items()}
