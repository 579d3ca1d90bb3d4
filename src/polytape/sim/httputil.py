"""Small aiohttp helpers shared by the simulated APIs: app keys, params, JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from polytape.sim.world import World

WORLD = web.AppKey("world", World)


class BadParam(Exception):
    """A request the real API rejects; rendered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(data: Any) -> str:
    """Compact JSON, non-ASCII kept, like the real services."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with the compact encoding."""
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


def error(status: int, message: str) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status)


def q_bool(request: web.Request, name: str, default: bool | None, *, status: int = 400) -> bool | None:
    """Parse ``true``/``false`` (case-insensitive)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadParam(status, f"invalid boolean for {name}: {raw}")


def q_int(request: web.Request, name: str, default: int | None, *, status: int = 400) -> int | None:
    """Parse an integer parameter."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadParam(status, f"invalid integer for {name}: {raw}") from None


def q_float(request: web.Request, name: str, *, status: int = 400) -> float | None:
    """Parse a number parameter."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadParam(status, f"invalid number for {name}: {raw}") from None


def q_list(request: web.Request, *names: str) -> list[str] | None:
    """Values of a repeatable and/or comma-separated parameter (any alias), or ``None``."""
    values: list[str] = []
    seen = False
    for name in names:
        for raw in request.query.getall(name, []):
            seen = True
            values += [v.strip() for v in raw.split(",") if v.strip()]
    return values if seen else None


def encode_cursor(*parts: object) -> str:
    """An opaque cursor (base64 of colon-joined parts)."""
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n_parts: int, *, status: int) -> list[int]:
    """Decode ``encode_cursor`` output of ``n_parts`` integers or raise ``BadParam``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = [int(p) for p in base64.urlsafe_b64decode(padded.encode()).decode().split(":")]
    except (ValueError, UnicodeDecodeError):
        raise BadParam(status, "invalid cursor") from None
    if len(parts) != n_parts:
        raise BadParam(status, "invalid cursor")
    return parts


def is_condition_id(value: str) -> bool:
    """``0x`` + 64 hex digits."""
    if len(value) != 66 or not value.startswith("0x"):
        return False
    try:
        int(value[2:], 16)
    except ValueError:
        return False
    return True
