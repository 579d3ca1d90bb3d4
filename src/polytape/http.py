"""The HTTP layer every REST client shares.

One :class:`HttpClient` per API base URL, one :class:`HostThrottle` per host shared by
every client of that host (through an :class:`HttpSession`). Requests are retried with
capped, fully jittered exponential backoff on 5xx, timeouts and connection errors; a 429
(or a Cloudflare rate-limit page) pauses the whole host, halves its concurrency and lets
it recover additively. Foreign errors leave this module only as :mod:`polytape.errors`.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import math
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import structlog

from polytape import metrics
from polytape.errors import (
    ApiError,
    ClientError,
    PayloadError,
    RateLimited,
    ResponseTooLarge,
    RetriesExhausted,
    ServerError,
    TransportError,
)

log = structlog.get_logger("polytape.http")

_ERROR_BODY_BYTES = 64_000  # error pages are read this far, then truncated
_EXCERPT_CHARS = 200
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_CLOUDFLARE_RATE_MARKERS = ("1015", "rate limit", "access denied", "too many requests")


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
    attempt_timeout: float = 120.0
    """Deadline for one whole attempt (headers and body), against bodies that trickle."""
    retry_after_max: float = 300.0
    """A server's Retry-After longer than this is cut to this."""
    recover_after: int = 10
    """Consecutive successes before a throttled host's concurrency grows by one."""
    throttle_cooldown: float = 60.0
    """How long after its last 429 a host still counts as throttled."""


@dataclass(frozen=True)
class JsonResponse:
    """A decoded 2xx answer."""

    data: Any
    status: int
    headers: Mapping[str, str]


class HostThrottle:
    """Adaptive limiter for one host, shared by every client talking to it.

    Concurrency follows AIMD: it starts at ``max_concurrency``, halves on a 429 (at most
    once per *generation*, so a burst of 429s from requests sent together counts once)
    down to 1, and grows by one after ``recover_after`` consecutive successes. A 429 also
    sets ``not_before``, a monotonic instant before which no request to the host starts:
    the server's Retry-After, else an exponential backoff on consecutive throttles.
    """

    def __init__(
        self,
        host: str,
        *,
        max_concurrency: int = 8,
        recover_after: int = 10,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1 or recover_after < 1:
            raise ValueError("max_concurrency and recover_after must be at least 1")
        self.host = host
        self.max_concurrency = max_concurrency
        self.recover_after = recover_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.cooldown = cooldown
        self.limit = max_concurrency
        self.in_flight = 0
        self.not_before = -math.inf
        self.throttled_count = 0
        self.last_throttled_at: float | None = None
        self.generation = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._successes = 0
        self._strikes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_config(cls, host: str, config: HttpConfig) -> HostThrottle:
        """A throttle with the limits and backoff of ``config``."""
        return cls(
            host,
            max_concurrency=config.max_concurrency,
            recover_after=config.recover_after,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            cooldown=config.throttle_cooldown,
        )

    @property
    def is_throttled(self) -> bool:
        """True while the host is slowed down: limit below max, paused, or a recent 429."""
        now = self._clock()
        recent = self.last_throttled_at is not None and now - self.last_throttled_at < self.cooldown
        return recent or self.limit < self.max_concurrency or now < self.not_before

    @property
    def slowdown(self) -> float:
        """Factor (≥ 1) by which a job polling this host should stretch its interval."""
        factor = self.max_concurrency / self.limit
        return max(factor, 2.0) if self.is_throttled else factor

    def wait_time(self) -> float:
        """Seconds until requests to the host may start again (0 when they may now)."""
        return max(0.0, self.not_before - self._clock())

    def on_success(self) -> None:
        """Count an answer that was not throttled; grow the limit after enough of them."""
        self._strikes = 0
        if self.limit >= self.max_concurrency:
            self._successes = 0
            return
        self._successes += 1
        if self._successes >= self.recover_after:
            self._successes = 0
            self.limit += 1
            self._wake()

    def on_throttled(self, retry_after: float | None = None, *, generation: int | None = None) -> float:
        """Record a 429 and pause the host; return the pause in seconds.

        ``generation`` is what :meth:`acquire` returned for the throttled request; a 429
        from an older generation pauses the host but does not shrink it again.
        """
        now = self._clock()
        self.throttled_count += 1
        self.last_throttled_at = now
        self._successes = 0
        if generation is None or generation == self.generation:
            self.generation += 1
            self.limit = max(1, self.limit // 2)
            self._strikes += 1
        pause = retry_after if retry_after is not None else self._backoff()
        self.not_before = max(self.not_before, now + max(0.0, pause))
        return self.not_before - now

    def _backoff(self) -> float:
        """Exponential pause on consecutive throttles, with half of it jittered."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, self._strikes - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def acquire(self) -> int:
        """Wait for the pause to end and a free slot; return the current generation."""
        while True:
            pause = self.wait_time()
            if pause > 0:
                await asyncio.sleep(pause)
            elif self.in_flight < self.limit:
                self.in_flight += 1
                return self.generation
            else:
                await self._wait_for_slot()

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self.in_flight -= 1
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """``async with throttle.slot() as generation:`` around one request."""
        generation = await self.acquire()
        try:
            yield generation
        finally:
            self.release()

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, then cancelled: pass the slot on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Wake as many waiters as there are free slots; they re-check on waking."""
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


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

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return the decoded JSON body."""
        return (await self.request_json("GET", path, params=params)).data

    async def post_json(self, path: str, body: Any) -> Any:
        """POST ``body`` as JSON to ``path`` and return the decoded JSON answer."""
        return (await self.request_json("POST", path, json=body)).data

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> JsonResponse:
        """Send one request, retrying what may pass on a second try.

        Raises :class:`ClientError` (4xx), :class:`ResponseTooLarge`, :class:`PayloadError`
        (a 2xx body that is not JSON) at once, and :class:`RetriesExhausted` when
        ``max_retries`` retries of 5xx, 429s, timeouts or connection errors all failed.
        """
        url = self.url(path)
        query = encode_params(params)
        content = None if json is None else msgspec.json.encode(json)
        attempts = self._config.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(method, url, query, content)
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
        self, method: str, url: str, query: dict[str, str | list[str]], content: bytes | None
    ) -> JsonResponse:
        headers = {"Content-Type": "application/json"} if content is not None else None
        outcome = "error"
        async with self.throttle.slot() as generation:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._config.attempt_timeout):
                    async with self._http.stream(
                        method, url, params=query, content=content, headers=headers
                    ) as response:
                        outcome = str(response.status_code)
                        body = await self._read_body(response, url)
            except (httpx.TimeoutException, TimeoutError) as exc:
                outcome = "timeout"
                raise TransportError(f"timed out: {method} {url}", url=url) from exc
            except httpx.TransportError as exc:
                raise TransportError(f"{type(exc).__name__} on {method} {url}: {exc}", url=url) from exc
            except httpx.HTTPError as exc:
                raise ApiError(f"{type(exc).__name__} on {method} {url}: {exc}", url=url) from exc
            finally:
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

    async def _read_body(self, response: httpx.Response, url: str) -> bytes:
        """Read the body; past the cap raise :class:`ResponseTooLarge` (error bodies: truncate)."""
        ok = response.is_success
        cap = self._config.max_response_bytes if ok else _ERROR_BODY_BYTES
        declared = response.headers.get("content-length", "")
        if ok and declared.isdigit() and int(declared) > cap:
            raise _too_large(url, response.status_code, f"declares {declared} bytes")
        buffer = bytearray()
        async for chunk in response.aiter_bytes():
            buffer += chunk
            if len(buffer) > cap:
                if ok:
                    raise _too_large(url, response.status_code, f"passed {cap} bytes")
                return bytes(buffer[:cap])
        return bytes(buffer)


def _too_large(url: str, status: int, what: str) -> ResponseTooLarge:
    return ResponseTooLarge(f"response from {url} {what}, over the size cap", url=url, status=status)


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
    except msgspec.DecodeError as exc:
        raise PayloadError(f"response from {url} is not valid JSON ({exc}): {excerpt(body)!r}") from exc


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
    except msgspec.DecodeError:
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
