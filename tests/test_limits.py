"""What one client may make us do: payment sessions per address and per viewer (each
is a provider transaction with a real provider), counted across instances with Redis;
WebSockets per viewer. One viewer over their limit: 429 with Retry-After, and nothing
made. An address over its share is a crowd, maybe: its further buyers wait in line
(202), never refused (tests/test_line.py has the line itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import (
    REDIS_URL,
    AppFactory,
    FakeClock,
    make_settings,
)

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


def limited(settings: Settings, tmp_path: Path, **limits: str) -> Settings:
    return make_settings(tmp_path, GATEWAY_STORE=settings.store_url,
                         GATEWAY_REDIS_KEY_PREFIX=settings.redis_key_prefix, **limits)


async def new_viewer_asks(client: TestClient[web.Request, web.Application]
                          ) -> tuple[int, dict[str, object], dict[str, str]]:
    """A request without cookies: a new viewer each time, as a script dropping them."""
    async with aiohttp.ClientSession() as fresh, fresh.post(
            client.make_url("/api/generate-qris"), json={"streamId": "demo"}) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_one_address_makes_only_so_many_sessions_then_its_buyers_wait(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, clock: FakeClock) -> None:
    viewer = await make_viewer(limited(settings, tmp_path, GATEWAY_QR_RATE_PER_ADDRESS="3",
                                       GATEWAY_QR_RATE_WINDOW_SECONDS="60"))
    for _ in range(3):
        assert (await new_viewer_asks(viewer.http))[0] == 201
    status, body, headers = await new_viewer_asks(viewer.http)
    assert status == 202 and "Retry-After" not in headers
    assert body["data"]["queued"] is True and body["data"]["position"] >= 1


async def test_one_viewer_may_make_only_so_many_but_always_sees_their_pending_qr(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    viewer = await make_viewer(limited(settings, tmp_path, GATEWAY_QR_RATE_PER_VIEWER="1"))
    first = await viewer.generate_qris("demo")
    refused = await viewer.generate_qris("konser-malam", expect=429)
    assert refused["code"] == "rate_limited"
    again = await viewer.generate_qris("demo", expect=200)  # the same QR, never refused
    assert again["sessionId"] == first["sessionId"]


async def test_the_limit_is_shared_by_instances_on_one_redis(
        aiohttp_client: ClientFactory, tmp_path: Path, clock: FakeClock,
        redis_prefix: str) -> None:
    clients = [await aiohttp_client(create_app(make_settings(
        tmp_path / name, GATEWAY_STORE=REDIS_URL, GATEWAY_REDIS_KEY_PREFIX=redis_prefix,
        GATEWAY_QR_RATE_PER_ADDRESS="2"), clock=clock)) for name in ("a", "b")]
    assert (await new_viewer_asks(clients[0]))[0] == 201
    assert (await new_viewer_asks(clients[1]))[0] == 201
    assert (await new_viewer_asks(clients[0]))[0] == 202  # the share is used up: in line
    assert (await new_viewer_asks(clients[1]))[0] == 202


async def test_one_viewer_may_hold_only_so_many_websockets(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    viewer = await make_viewer(limited(settings, tmp_path,
                                       GATEWAY_MAX_WEBSOCKETS_PER_VIEWER="2"))
    qr = await viewer.generate_qris()
    path = f"/ws?sessionId={qr['sessionId']}"
    held = [await viewer.http.ws_connect(path) for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await viewer.http.ws_connect(path)
    assert refused.value.status == 429
    other = await make_viewer()  # another viewer is not affected
    other_qr = await other.generate_qris()
    async with other.http.ws_connect(f"/ws?sessionId={other_qr['sessionId']}") as socket:
        assert (await socket.receive_json())["type"] == "status"
    await held.pop().close()
    again = await viewer.http.ws_connect(path)  # a slot is free again
    assert (await again.receive_json())["type"] == "status"
    for socket in (*held, again):
        await socket.close()
