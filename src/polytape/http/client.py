"""Clients of the HTTP layer: one :class:`HttpClient` per API base URL.

An :class:`HttpSession` holds one :class:`~polytape.http.throttle.HostThrottle` per host
and the clients made through it. Requests are retried with capped, fully jittered
exponential backoff on 5xx, timeouts and connection errors; a 429 (or a Cloudflare
rate-limit page) pauses the whole host. Foreign errors leave only as :mod:`polytape.errors`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import structlog

from polytape import metrics
from polytape.errors import (
    ApiError,
    RateLimited,
    RetriesExhausted,
    ServerError,
    TransportError,
)
from polytape.http.config import HttpConfig
from polytape.http.responses import (
    ERROR_BODY_BYTES,
    decode_json,
    encode_params,
    error_from_response,
    host_key,
    too_large,
)
from polytape.http.throttle import HostThrottle

log = structlog.get_logger("polytape.http")


@dataclass
class RequestTally:
    """Attempts made inside :func:`count_requests`: how many got an HTTP answer (any
    status), and how many could not even connect (refused, unreachable, connect timeout)."""

    attempts: int = 0
    answered: int = 0
    connect_failed: int = 0

    @property
    def none_connected(self) -> bool:
        """Requests were tried and every attempt failed to connect."""
        return self.attempts > 0 and self.connect_failed == self.attempts


_TALLY: ContextVar[RequestTally | None] = ContextVar("polytape_request_tally", default=None)


@contextmanager
def count_requests() -> Iterator[RequestTally]:
    """Count the HTTP attempts of this task (and the tasks it starts) while inside."""
    tally = RequestTally()
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


@dataclass(frozen=True)
class JsonResponse:
    """A decoded 2xx answer."""

    data: Any
    status: int
    headers: Mapping[str, str]


class HttpSession:
    """Registry of per-host throttles, and the clients made through it."""

    def __init__(self, config: HttpConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._throttles: dict[str, HostThrottle] = {}
        self._clients: list[HttpClient] = []

    @property
    def throttles(self) -> Mapping[str, HostThrottle]:
        """Every throttle so far, keyed by ``host[:port]``."""
        return self._throttles

    def throttle_for(self, base_url: str) -> HostThrottle:
        """The one throttle of ``base_url``'s host, made on first use."""
        host = host_key(base_url)
        if host not in self._throttles:
            self._throttles[host] = HostThrottle.from_config(host, self.config)
        return self._throttles[host]

    def client(self, base_url: str, *, name: str) -> HttpClient:
        """A client for ``base_url`` sharing its host's throttle; closed with the session."""
        client = HttpClient(
            base_url,
            config=self.config,
            name=name,
            throttle=self.throttle_for(base_url),
            transport=self._transport,
        )
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        """Close every client made through this session."""
        for client in self._clients:
            await client.aclose()
        self._clients.clear()


class HttpClient:
    """JSON over HTTP to one API base URL, with retries, throttling and a size cap."""

    def __init__(
        self,
        base_url: str,
        *,
        config: HttpConfig,
        name: str,
        throttle: HostThrottle | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.host = host_key(base_url)
        self.throttle = throttle or HostThrottle.from_config(self.host, config)
        self._config = config
        self._rng = random.Random()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            ),
            headers={"User-Agent": config.user_agent, "Accept": "application/json"},
            transport=transport,
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` under the base URL."""
        return f"{self.base_url}/{path.lstrip('/')}"

    async def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, *, max_bytes: int | None = None
    ) -> Any:
        """GET ``path`` and return the decoded JSON body (at most ``max_bytes`` of it)."""
        return (await self.request_json("GET", path, params=params, max_bytes=max_bytes)).data

    async def post_json(self, path: str, body: Any, *, max_bytes: int | None = None) -> Any:
        """POST ``body`` as JSON to ``path`` and return the decoded JSON answer."""
        return (await self.request_json("POST", path, json=body, max_bytes=max_bytes)).data

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        max_bytes: int | None = None,
    ) -> JsonResponse:
        """Send one request, retrying what may pass on a second try.

        Raises :class:`ClientError` (4xx), :class:`ResponseTooLarge`, :class:`PayloadError`
        (a 2xx body that is not JSON) at once, and :class:`RetriesExhausted` when
        ``max_retries`` retries of 5xx, 429s, timeouts or connection errors all failed.
        ``max_bytes`` caps this endpoint's answers below the configured cap (the largest
        real page of an endpoint is far smaller than the global cap).
        """
        cap = self._config.max_response_bytes
        cap = cap if max_bytes is None else min(cap, max_bytes)
        url = self.url(path)
        query = encode_params(params)
        content = None if json is None else msgspec.json.encode(json)
        attempts = self._config.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(method, url, query, content, cap)
            except ApiError as exc:
                if not exc.retryable:
                    raise
                if attempt == attempts:
                    raise RetriesExhausted(
                        f"gave up on {method} {url} after {attempts} attempts: {exc}",
                        last_error=exc,
                        attempts=attempts,
                    ) from exc
                delay = self._retry_delay(exc, attempt)
                log.warning(
                    "http retry",
                    client=self.name,
                    url=url,
                    status=exc.status,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=str(exc),
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, exc: ApiError, attempt: int) -> float:
        """Server's hint if any, else full-jitter exponential backoff (and the host's pause)."""
        if exc.retry_after is not None:
            return min(exc.retry_after, self._config.retry_after_max)
        ceiling = min(self._config.backoff_max, self._config.backoff_base * 2.0 ** (attempt - 1))
        delay = self._rng.uniform(0, ceiling)
        if isinstance(exc, RateLimited):
            delay = max(delay, self.throttle.wait_time())
        return delay

    async def _attempt(
        self,
        method: str,
        url: str,
        query: dict[str, str | list[str]],
        content: bytes | None,
        cap: int,
    ) -> JsonResponse:
        headers = {"Content-Type": "application/json"} if content is not None else None
        outcome = "error"
        connect_failed = False
        async with self.throttle.slot() as generation:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._config.attempt_timeout):
                    async with self._http.stream(
                        method, url, params=query, content=content, headers=headers
                    ) as response:
                        outcome = str(response.status_code)
                        body = await self._read_body(response, url, cap)
            except TimeoutError as exc:
                outcome = "timeout"
                raise TransportError(
                    f"deadline of {self._config.attempt_timeout:g}s passed: {method} {url}", url=url
                ) from exc
            except httpx.TimeoutException as exc:
                outcome = "timeout"
                connect_failed = isinstance(exc, httpx.ConnectTimeout)
                raise TransportError(f"timed out: {method} {url}", url=url) from exc
            except httpx.TransportError as exc:
                connect_failed = isinstance(exc, httpx.ConnectError)
                raise TransportError(f"{type(exc).__name__} on {method} {url}: {exc}", url=url) from exc
            except httpx.HTTPError as exc:
                raise ApiError(f"{type(exc).__name__} on {method} {url}: {exc}", url=url) from exc
            finally:
                _tally(outcome, connect_failed)
                metrics.HTTP_REQUESTS.labels(host=self.host, status=outcome).inc()
                metrics.HTTP_LATENCY.labels(host=self.host).observe(time.monotonic() - started)
        return self._handle(response, body, url, generation)

    def _handle(self, response: httpx.Response, body: bytes, url: str, generation: int) -> JsonResponse:
        """Turn a complete answer into a :class:`JsonResponse` or an error; feed the throttle."""
        status = response.status_code
        if 200 <= status < 300:
            self.throttle.on_success()
            return JsonResponse(decode_json(body, url), status, response.headers)
        error = error_from_response(status, response.headers, body, url, self._config.retry_after_max)
        if isinstance(error, RateLimited):
            metrics.HTTP_429.labels(host=self.host).inc()
            self.throttle.on_throttled(error.retry_after, generation=generation)
        elif not isinstance(error, ServerError):
            self.throttle.on_success()
        raise error

    async def _read_body(self, response: httpx.Response, url: str, cap: int) -> bytes:
        """Read the body; past the cap raise :class:`ResponseTooLarge` (error bodies: truncate)."""
        ok = response.is_success
        cap = cap if ok else ERROR_BODY_BYTES
        declared = response.headers.get("content-length", "")
        if ok and declared.isdigit() and int(declared) > cap:
            raise too_large(url, response.status_code, f"declares {declared} bytes")
        buffer = bytearray()
        async for chunk in response.aiter_bytes():
            buffer += chunk
            if len(buffer) > cap:
                if ok:
                    raise too_large(url, response.status_code, f"passed {cap} bytes", bytes(buffer[:65_536]))
                return bytes(buffer[:cap])
        return bytes(buffer)


def _tally(outcome: str, connect_failed: bool) -> None:
    tally = _TALLY.get()
    if tally is not None:
        tally.attempts += 1
        tally.answered += outcome.isdigit()
        tally.connect_failed += connect_failed
