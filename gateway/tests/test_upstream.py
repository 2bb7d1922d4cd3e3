"""The forwarding client against a real HTTP server: keep-alive, large and chunked bodies, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

pytestmark = pytest.mark.anyio

BIG = 3 * 1024 * 1024


def upstream_app() -> Starlette:
    async def small(request: Request) -> Response:
        body = await request.body()
        return Response(b"len=%d" % len(body), headers={"x-one": "1", "set-cookie": "a=1"})

    async def big(_request: Request) -> Response:
        return Response(b"y" * BIG)

    async def chunked(_request: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"z" * 1000

        return StreamingResponse(pieces())

    async def empty(_request: Request) -> Response:
        return Response(status_code=204)

    async def slow(_request: Request) -> Response:
        await asyncio.sleep(2)
        return Response(b"late")

    return Starlette(
        routes=[
            Route("/small", small, methods=["GET", "POST", "HEAD"]),
            Route("/big", big),
            Route("/chunked", chunked),
            Route("/empty", empty, methods=["DELETE"]),
            Route("/slow", slow),
        ]
    )


@pytest.fixture
def server(server_thread: Any) -> Any:
    running = server_thread(upstream_app(), timeout_keep_alive=1)
    yield running
    running.stop()


async def test_small_responses_come_whole_and_the_connection_is_reused(server: Any) -> None:
    pool = UpstreamPool(server.url)
    for body in (b"", b"abc", b"{}"):
        response = await pool.request("POST", b"/small", [(b"content-type", b"application/json")], body)
        assert response.status == 200
        assert response.body == b"len=%d" % len(body)
        assert (b"x-one", b"1") in response.headers
    assert len(pool._idle) == 1 and pool._idle[0].used == 3
    await pool.aclose()


async def test_large_and_chunked_bodies_are_streamed(server: Any) -> None:
    pool = UpstreamPool(server.url, buffer_limit=1024 * 1024)
    response = await pool.request("GET", b"/big", [], b"")
    assert response.body is None
    assert len(b"".join([c async for c in response.stream()])) == BIG
    response = await pool.request("GET", b"/chunked", [], b"")
    assert response.body is None
    assert b"".join([c async for c in response.stream()]) == b"z" * 5000
    assert len(pool._idle) == 1  # both exchanges finished cleanly on one socket
    await pool.aclose()


async def test_streamed_upload_head_and_no_content(server: Any) -> None:
    pool = UpstreamPool(server.url)

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"u" * 500_000

    response = await pool.request("POST", b"/small", [(b"content-length", b"2000000")], upload())
    assert response.body == b"len=2000000"
    head = await pool.request("HEAD", b"/small", [], b"")
    assert head.status == 200 and head.body == b""
    empty = await pool.request("DELETE", b"/empty", [], b"")
    assert empty.status == 204 and empty.body == b""
    again = await pool.request("GET", b"/small", [], b"")
    assert again.body == b"len=0"
    await pool.aclose()


async def test_a_connection_closed_by_the_server_while_idle_is_replaced(server: Any) -> None:
    pool = UpstreamPool(server.url, keepalive_expiry=30)
    assert (await pool.request("GET", b"/small", [], b"")).status == 200
    await asyncio.sleep(1.5)  # the server's keep-alive timeout (1 s) has closed it
    assert (await pool.request("GET", b"/small", [], b"")).status == 200
    await pool.aclose()


async def test_down_and_slow_upstreams_raise(server: Any) -> None:
    slow = UpstreamPool(server.url, read_timeout=0.3)
    with pytest.raises(UpstreamTimeout):
        await slow.request("GET", b"/slow", [], b"")
    await slow.aclose()
    server.stop()
    down = UpstreamPool(server.url)
    with pytest.raises(UpstreamError):
        await down.request("GET", b"/small", [], b"")
