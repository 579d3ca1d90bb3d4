"""The REST clients against a real local HTTP server: paths, parameters, paging, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from polytape.clients import ApiClients, open_clients
from polytape.errors import ClientError, OffsetCapExceeded, PayloadError
from polytape.http import HttpConfig
from tests.support.loopback import serve_app

CONFIG = HttpConfig(timeout=1.0, connect_timeout=1.0, max_retries=1, backoff_base=0.01, backoff_max=0.02)
CID = "0x" + "ab" * 32

Answer = Callable[[dict[str, str], Any], tuple[int, Any]]


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any


@dataclass
class FakeApi:
    """Serves one answer function per path under /gamma, /data and /clob; records requests."""

    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(self, path: str, answer: Answer | Any, status: int = 200) -> None:
        if callable(answer):
            self.answers[path] = answer
        else:
            self.answers[path] = lambda query, body: (status, answer)

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.seen.append(Seen(request.method, request.path, list(request.query.items()), body))
        answer = self.answers.get(request.path)
        if answer is None:
            return web.json_response({"error": "not found"}, status=404)
        status, data = answer(dict(request.query), body)
        return web.json_response(data, status=status)


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApi, ApiClients]]:
    fake = FakeApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    async with serve_app(app) as base:
        clients = await open_clients(f"{base}/gamma", f"{base}/data", f"{base}/clob", CONFIG)
        yield fake, clients
        await clients.aclose()


async def test_clients_of_one_host_share_one_throttle(api: tuple[FakeApi, ApiClients]) -> None:
    _, clients = api
    throttles = clients.throttles
    assert throttles["gamma"] is throttles["data"] is throttles["clob"]
    assert len(clients.session.throttles) == 1


async def test_events_keyset_pages_with_after_cursor(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    pages = {"": ([{"id": "1"}], "c1"), "c1": ([{"id": "2"}], "")}

    def answer(query: dict[str, str], body: Any) -> tuple[int, Any]:
        events, cursor = pages[query.get("after_cursor", "")]
        return 200, {"events": events, "next_cursor": cursor}

    fake.on("/gamma/events/keyset", answer)
    first, cursor = await clients.gamma.events_keyset(limit=2, closed=False)
    assert (first, cursor) == ([{"id": "1"}], "c1")
    second, cursor = await clients.gamma.events_keyset(limit=2, after_cursor=cursor, closed=False)
    assert (second, cursor) == ([{"id": "2"}], None)
    queries = [s.query for s in fake.requests("/gamma/events/keyset")]
    assert queries[0] == [("closed", "false"), ("limit", "2")]
    assert ("after_cursor", "c1") in queries[1]


async def test_events_keyset_refuses_a_cursor_that_does_not_move(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/gamma/events/keyset", {"events": [], "next_cursor": "same"})
    with pytest.raises(PayloadError, match="cursor"):
        await clients.gamma.events_keyset(limit=1, after_cursor="same")


async def test_legacy_lists_tags_and_sports(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/gamma/events", [{"id": "9"}])
    fake.on("/gamma/markets", [{"id": "7"}])
    fake.on("/gamma/tags", [{"id": "1", "label": "Politics"}])
    fake.on("/gamma/sports", [{"sport": "nfl", "tags": "1,450"}])
    assert await clients.gamma.events(limit=5, offset=10, active=True, order="id") == [{"id": "9"}]
    assert await clients.gamma.markets(condition_ids=[CID, CID]) == [{"id": "7"}]
    assert await clients.gamma.tags(100, 0) == [{"id": "1", "label": "Politics"}]
    assert await clients.gamma.sports() == [{"sport": "nfl", "tags": "1,450"}]
    assert fake.requests("/gamma/events")[0].query == [
        ("active", "true"),
        ("order", "id"),
        ("limit", "5"),
        ("offset", "10"),
    ]
    assert fake.requests("/gamma/markets")[0].query == [("condition_ids", CID)] * 2


async def test_gamma_list_that_is_not_a_list_is_a_payload_error(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/gamma/tags", {"tags": []})
    with pytest.raises(PayloadError, match="expected a JSON array"):
        await clients.gamma.tags(10, 0)


async def test_trades_parameters(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/data/trades", [{"transactionHash": "0x1"}])
    rows = await clients.data.trades(
        limit=500, offset=0, filter_type="CASH", filter_amount=10000, market=[CID, CID], start=1, end=2
    )
    assert rows == [{"transactionHash": "0x1"}]
    assert dict(fake.requests("/data/trades")[0].query) == {
        "limit": "500",
        "offset": "0",
        "takerOnly": "true",
        "filterType": "CASH",
        "filterAmount": "10000",
        "market": f"{CID},{CID}",
        "start": "1",
        "end": "2",
    }


async def test_trades_offset_cap_is_its_own_error(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/data/trades", {"error": "max historical activity offset of 3000 exceeded"}, status=400)
    with pytest.raises(OffsetCapExceeded) as caught:
        await clients.data.trades(limit=500, offset=3000)
    assert isinstance(caught.value, ClientError)
    assert caught.value.status == 400
    assert len(fake.requests("/data/trades")) == 1


async def test_other_400_stays_a_client_error(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/data/trades", {"error": "invalid market"}, status=400)
    with pytest.raises(ClientError) as caught:
        await clients.data.trades(limit=500, offset=0)
    assert not isinstance(caught.value, OffsetCapExceeded)


async def test_trades_v2_follows_the_cursor(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api

    def answer(query: dict[str, str], body: Any) -> tuple[int, Any]:
        if "cursor" not in query:
            return 200, {"data": [{"n": 1}], "pagination": {"next_cursor": "abc", "has_more": True}}
        return 200, {"data": [{"n": 2}], "pagination": {"next_cursor": None, "has_more": False}}

    fake.on("/data/v2/trades", answer)
    rows, cursor = await clients.data.trades_v2(limit=500, condition=[CID], filter_type="CASH")
    assert (rows, cursor) == ([{"n": 1}], "abc")
    rows, cursor = await clients.data.trades_v2(cursor=cursor)
    assert (rows, cursor) == ([{"n": 2}], None)
    first, second = fake.requests("/data/v2/trades")
    assert dict(first.query) == {
        "limit": "500",
        "condition": CID,
        "taker_only": "true",
        "filter_type": "CASH",
    }
    assert dict(second.query) == {"cursor": "abc", "taker_only": "true"}


async def test_open_interest_batches_ids_and_merges(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on(
        "/data/oi",
        lambda query, body: (200, [{"market": m, "value": 1.0} for m in query["market"].split(",")]),
    )
    ids = [f"0x{i:064x}" for i in range(120)]
    rows = await clients.data.open_interest(ids)
    assert [row["market"] for row in rows] == ids
    assert [len(dict(s.query)["market"].split(",")) for s in fake.requests("/data/oi")] == [50, 50, 20]
    assert await clients.data.open_interest([]) == []


async def test_book_and_missing_book(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api

    def answer(query: dict[str, str], body: Any) -> tuple[int, Any]:
        if query["token_id"] == "1":
            return 200, {"asset_id": "1", "bids": [], "asks": []}
        return 404, {"error": "No orderbook exists for the requested token id"}

    fake.on("/clob/book", answer)
    assert await clients.clob.book("1") == {"asset_id": "1", "bids": [], "asks": []}
    assert await clients.clob.book("2") is None


async def test_book_other_errors_propagate(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/clob/book", {"error": "Invalid token id"}, status=400)
    with pytest.raises(ClientError, match="Invalid token id"):
        await clients.clob.book("x")


async def test_books_posts_batches_of_at_most_500(api: tuple[FakeApi, ApiClients]) -> None:
    fake, clients = api
    fake.on("/clob/books", lambda query, body: (200, [{"asset_id": item["token_id"]} for item in body]))
    ids = [str(i) for i in range(1200)]
    books = await clients.clob.books(ids)
    assert [book["asset_id"] for book in books] == ids
    posts = fake.requests("/clob/books")
    assert [s.method for s in posts] == ["POST"] * 3
    assert [len(s.body) for s in posts] == [500, 500, 200]
    assert posts[0].body[0] == {"token_id": "0"}
    assert await clients.clob.books([]) == []
