"""The shared HTTP layer against a real local HTTP server on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from polytape import metrics
from polytape.errors import (
    ClientError,
    PayloadError,
    RateLimited,
    ResponseTooLarge,
    RetriesExhausted,
    ServerError,
    TransportError,
)
from polytape.http import (
    HttpClient,
    HttpConfig,
    HttpSession,
    encode_params,
    error_from_response,
    excerpt,
    parse_retry_after,
)
from tests.support.loopback import serve_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FAST = HttpConfig(
    timeout=0.3,
    connect_timeout=0.3,
    max_retries=2,
    backoff_base=0.01,
    backoff_max=0.05,
    attempt_timeout=2.0,
)

CLOUDFLARE_403 = b"""<!DOCTYPE html>
<html><head><title>Attention Required! | Cloudflare</title></head>
<body><h1>Sorry, you have been blocked</h1><p>Cloudflare Ray ID: 8a1b2c3d</p></body></html>"""


class ScriptedServer:
    """Answers each path from a script of handlers; the last handler repeats."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Handler]] = {}
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()  # lets hanging handlers finish at teardown
        self.in_flight = 0
        self.peak = 0
        self.base_url = ""

    def on(self, path: str, *handlers: Handler) -> None:
        self.scripts[path] = list(handlers)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        script = self.scripts.get(path)
        if not script:
            return web.json_response({"error": "not scripted"}, status=599)
        handler = script[min(self.hits[path], len(script) - 1)]
        self.hits[path] += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=status, headers=headers)

    return handler


def raw(body: bytes, status: int = 200, content_type: str = "text/html", **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type=content_type, headers=headers)

    return handler


def echo() -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "query": [[k, v] for k, v in request.query.items()],
                "body": json.loads(body) if body else None,
                "content_type": request.headers.get("Content-Type"),
                "user_agent": request.headers.get("User-Agent"),
            }
        )

    return handler


def slow(seconds: float, data: Any = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response(data)

    return handler


def hang(server: ScriptedServer) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.json_response(None)

    return handler


def chunked(total: int) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        response.content_type = "application/json"
        await response.prepare(request)
        for _ in range(total // 1000):
            await response.write(b" " * 1000)
        await response.write_eof()
        return response

    return handler


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.dispatch)
    async with serve_app(app) as base_url:
        scripted.base_url = base_url
        yield scripted
        scripted.release.set()


async def make_client(server: ScriptedServer, config: HttpConfig = FAST) -> HttpClient:
    return HttpClient(server.base_url, config=config, name="test")


async def test_5xx_then_success_is_retried(server: ScriptedServer) -> None:
    server.on("/x", reply({"error": "boom"}, 500), reply({}, 503), reply([1, 2]))
    async with await make_client(server) as client:
        assert await client.get_json("/x") == [1, 2]
    assert server.hits["/x"] == 3


async def test_persistent_500_raises_retries_exhausted(server: ScriptedServer) -> None:
    server.on("/x", reply({"error": "error getting the orderbook"}, 500))
    async with await make_client(server) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get_json("/x")
    assert caught.value.attempts == 3
    assert server.hits["/x"] == 3
    assert isinstance(caught.value.last_error, ServerError)
    assert caught.value.last_error.detail == "error getting the orderbook"
    assert caught.value.status == 500
    assert "after 3 attempts" in str(caught.value)


async def test_429_honours_retry_after_and_throttles_the_host(server: ScriptedServer) -> None:
    config = replace(FAST, max_concurrency=4, recover_after=2)
    server.on("/x", reply({"error": "Too Many Requests"}, 429, {"Retry-After": "1"}), reply({"ok": True}))
    host = f"127.0.0.1:{server.base_url.rsplit(':', 1)[1]}"
    before = metrics.REGISTRY.get_sample_value("polytape_http_429_total", {"host": host}) or 0.0
    async with await make_client(server, config) as client:
        started = time.monotonic()
        assert await client.get_json("/x") == {"ok": True}
        assert time.monotonic() - started >= 0.9
        throttle = client.throttle
        assert throttle.throttled_count == 1
        assert throttle.limit == 2  # halved from 4; one success so far
        assert throttle.is_throttled
        assert throttle.slowdown >= 2
        for _ in range(3):
            await client.get_json("/x")
        assert throttle.limit == 4  # +1 per two successes, back to the maximum
    after = metrics.REGISTRY.get_sample_value("polytape_http_429_total", {"host": host})
    assert after == before + 1


async def test_404_json_is_a_client_error_with_the_message(server: ScriptedServer) -> None:
    server.on("/book", reply({"error": "No orderbook exists for the requested token id"}, 404))
    async with await make_client(server) as client:
        with pytest.raises(ClientError) as caught:
            await client.get_json("/book", {"token_id": "1"})
    assert server.hits["/book"] == 1
    assert caught.value.status == 404
    assert caught.value.detail == "No orderbook exists for the requested token id"
    assert "No orderbook exists" in str(caught.value)


async def test_cloudflare_html_403_is_rate_limited_with_the_page_title(server: ScriptedServer) -> None:
    server.on("/events", raw(CLOUDFLARE_403, 403, server="cloudflare"))
    async with await make_client(server) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get_json("/events")
    last = caught.value.last_error
    assert isinstance(last, RateLimited)
    assert last.detail == "Attention Required! | Cloudflare"
    assert "Cloudflare page" in str(last)
    assert client.throttle.throttled_count == 3


async def test_html_404_is_a_client_error_naming_the_title(server: ScriptedServer) -> None:
    page = b"<html><head><title>404 Not Found</title></head><body><h1>Gone</h1></body></html>"
    server.on("/nope", raw(page, 404))
    async with await make_client(server) as client:
        with pytest.raises(ClientError, match="404 Not Found"):
            await client.get_json("/nope")


async def test_hanging_endpoint_times_out_and_is_retried(server: ScriptedServer) -> None:
    server.on("/slow", hang(server))
    async with await make_client(server) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get_json("/slow")
    assert isinstance(caught.value.last_error, TransportError)
    assert "timed out" in str(caught.value.last_error)
    assert server.hits["/slow"] == 3


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", config=FAST, name="test")
    async with client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get_json("/x")
    assert isinstance(caught.value.last_error, TransportError)


async def test_oversized_body_with_content_length(server: ScriptedServer) -> None:
    config = replace(FAST, max_response_bytes=10_000)
    server.on("/big", raw(b"[" + b"1," * 10_000 + b"1]", content_type="application/json"))
    async with await make_client(server, config) as client:
        with pytest.raises(ResponseTooLarge, match="declares"):
            await client.get_json("/big")
    assert server.hits["/big"] == 1


async def test_oversized_chunked_body_without_length(server: ScriptedServer) -> None:
    config = replace(FAST, max_response_bytes=10_000)
    server.on("/big", chunked(50_000))
    async with await make_client(server, config) as client:
        with pytest.raises(ResponseTooLarge, match="passed 10000 bytes"):
            await client.get_json("/big")
    assert server.hits["/big"] == 1


async def test_malformed_json_is_a_payload_error_naming_the_url(server: ScriptedServer) -> None:
    server.on("/bad", raw(b'{"events": [', content_type="application/json"))
    async with await make_client(server) as client:
        with pytest.raises(PayloadError, match=r"/bad is not valid JSON"):
            await client.get_json("/bad")
    assert server.hits["/bad"] == 1


async def test_post_json_and_query_encoding(server: ScriptedServer) -> None:
    server.on("/echo", echo())
    async with await make_client(server) as client:
        posted = await client.post_json("/echo", [{"token_id": "1"}])
        got = await client.request_json(
            "GET", "/echo", params={"active": True, "closed": False, "id": [1, 2], "skip": None}
        )
    assert posted["body"] == [{"token_id": "1"}]
    assert posted["content_type"] == "application/json"
    assert posted["user_agent"] == "polytape/0.1"
    assert got.status == 200
    assert got.headers["content-type"].startswith("application/json")
    assert got.data["query"] == [["active", "true"], ["closed", "false"], ["id", "1"], ["id", "2"]]


async def test_concurrency_is_capped_per_host_across_clients(server: ScriptedServer) -> None:
    config = replace(FAST, max_concurrency=2)
    server.on("/x", slow(0.05, [1]))
    session = HttpSession(config)
    first = session.client(server.base_url, name="a")
    second = session.client(server.base_url + "/", name="b")
    assert first.throttle is second.throttle
    try:
        results = await asyncio.gather(*(c.get_json("/x") for c in [first, second] * 4))
    finally:
        await session.aclose()
    assert results == [[1]] * 8
    assert server.peak == 2


async def test_requests_are_counted_by_host_and_status(server: ScriptedServer) -> None:
    server.on("/x", reply({}, 502), reply({}))
    async with await make_client(server) as client:
        before = metrics.REGISTRY.get_sample_value(
            "polytape_http_requests_total", {"host": client.host, "status": "502"}
        )
        await client.get_json("/x")
    after = metrics.REGISTRY.get_sample_value(
        "polytape_http_requests_total", {"host": client.host, "status": "502"}
    )
    assert (after or 0) == (before or 0) + 1


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


def test_json_retry_after_seconds_is_honoured() -> None:
    body = b'{"error": "post only mode", "code": "post_only_mode", "retry_after_seconds": 7}'
    error = error_from_response(503, {"content-type": "application/json"}, body, "http://h/x")
    assert isinstance(error, ServerError)
    assert error.retry_after == 7.0
    assert error.detail == "post only mode"


def test_retry_after_header_wins_and_is_capped() -> None:
    body = b'{"error": "slow down", "retry_after_seconds": 7}'
    error = error_from_response(429, {"retry-after": "9999"}, body, "http://h/x", retry_after_max=60)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 60


def test_cloudflare_1015_page_is_rate_limited() -> None:
    page = (
        b"<html><head><title>Access denied | gamma-api.polymarket.com used Cloudflare to restrict access"
        b"</title></head><body>Error 1015 You are being rate limited</body></html>"
    )
    error = error_from_response(429, {"content-type": "text/html", "server": "cloudflare"}, page, "u")
    assert isinstance(error, RateLimited)
    assert error.detail.startswith("Access denied | gamma-api.polymarket.com")


def test_cloudflare_52x_page_is_a_server_error() -> None:
    page = b"<html><head><title>example.com | 522: Connection timed out</title></head></html>"
    error = error_from_response(522, {"content-type": "text/html", "cf-ray": "1"}, page, "u")
    assert isinstance(error, ServerError)
    assert error.retryable
    assert "522: Connection timed out" in str(error)


def test_excerpt_of_plain_text_and_markup() -> None:
    assert excerpt(b"  upstream\n connect error  ") == "upstream connect error"
    assert excerpt(b"<p>a &amp; b</p>") == "a & b"
    assert len(excerpt(b"x" * 1000)) == 200


def test_encode_params() -> None:
    assert encode_params({"a": True, "b": None, "c": ["x", 2], "d": 1.5}) == {
        "a": "true",
        "c": ["x", "2"],
        "d": "1.5",
    }
