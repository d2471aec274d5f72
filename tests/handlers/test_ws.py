"""GET /ws: exactly the SPEC's protocol, only for the session's owner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.handlers import ws as ws_module
from gateway.keys import SESSIONS, STATUS_HUB, WEBSOCKETS
from gateway.model import PaymentSession, SessionStatus
from gateway.status_hub import StatusHub
from tests.conftest import API_KEY, FakeClock, ViewerClient, make_settings, wait_until

STATUS_FIELDS = {"type", "sessionId", "streamId", "status", "paidAt", "startsAt",
                 "expiresAt", "remainingTime", "endedReason"}


async def next_json(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(socket.receive(), timeout=5)
    assert message.type == WSMsgType.TEXT, message
    return json.loads(message.data)


async def test_snapshot_on_connect_then_every_change(viewer: ViewerClient,
                                                     clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        snapshot = await next_json(socket)
        assert snapshot == {"type": "status", "sessionId": qr["sessionId"], "streamId": "demo",
                            "status": "pending", "paidAt": None, "startsAt": None,
                            "expiresAt": qr["expiresAt"], "remainingTime": 1_200_000,
                            "endedReason": None}
        clock.advance(5)
        await viewer.pay(qr["trxId"])
        paid = await next_json(socket)
        assert set(paid) == STATUS_FIELDS
        assert paid["status"] == "paid" and paid["paidAt"] == clock()
        assert paid["remainingTime"] == 7_200_000

        await viewer.call("POST", f"/api/sessions/{qr['sessionId']}/revoke",
                          headers={"X-Api-Key": API_KEY}, expect=200)
        ended = await next_json(socket)
        assert ended["status"] == "expired" and ended["remainingTime"] == 0
        # Why, so a client can say it rather than offer to sell it again (issue 27).
        assert ended["endedReason"] == "revoked"


async def test_the_sweeper_pushes_expiry(viewer: ViewerClient, clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        assert (await next_json(socket))["status"] == "pending"
        clock.advance(1200)
        app = viewer.http.app
        assert app is not None
        await app[SESSIONS].sweep()
        assert (await next_json(socket))["status"] == "expired"


async def test_reconnecting_resends_the_state(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        assert (await next_json(socket))["status"] == "pending"
    await viewer.pay(qr["trxId"])  # while disconnected: missed
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        assert (await next_json(socket))["status"] == "paid"  # not stuck


async def test_someone_elses_session_is_4403_and_unknown_is_4404(
        viewer: ViewerClient, other_viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    await other_viewer.call("GET", "/api/user-sessions")
    for client, session_id, code, error_code in (
            (other_viewer, qr["sessionId"], 4403, "forbidden"),
            (viewer, "A" * 22, 4404, "session_not_found"),
            (viewer, "not-an-id", 4404, "invalid_request")):
        async with client.http.ws_connect(f"/ws?sessionId={session_id}") as socket:
            error = await next_json(socket)
            assert error["type"] == "error" and error["code"] == error_code
            assert error["error"]
            closing = await asyncio.wait_for(socket.receive(), timeout=5)
            assert closing.type == WSMsgType.CLOSE and socket.close_code == code


async def test_no_per_message_compression(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}",
                                      compress=15) as socket:
        assert socket.compress == 0
        assert (await next_json(socket))["status"] == "pending"


async def test_a_page_on_another_site_cannot_open_a_socket(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}",
                                     headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403


async def test_heartbeats_are_sent(viewer: ViewerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.2)
    qr = await viewer.generate_qris()
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}",
                                      autoping=False) as socket:
        assert (await next_json(socket))["status"] == "pending"
        ping = await asyncio.wait_for(socket.receive(), timeout=5)
        assert ping.type == WSMsgType.PING


async def test_sockets_are_forgotten_when_they_close(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    app = viewer.http.app
    assert app is not None
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        await next_json(socket)
        assert len(app[WEBSOCKETS]) == 1 and app[STATUS_HUB].watched_sessions == 1
    await wait_until(lambda: len(app[WEBSOCKETS]) == 0)
    assert app[STATUS_HUB].watched_sessions == 0


async def test_shutdown_closes_sockets_with_1001(
        tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> None:
    server = await aiohttp_server(create_app(make_settings(tmp_path)))
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.post(server.make_url("/api/generate-qris"),
                                json={"streamId": "demo"}) as response:
            qr = (await response.json())["data"]
        socket = await browser.ws_connect(server.make_url(f"/ws?sessionId={qr['sessionId']}"))
        await next_json(socket)
        await server.close()
        closing = await asyncio.wait_for(socket.receive(), timeout=5)
        # The close frame the server sent: 1001, going away (the TCP connection is then
        # dropped by the test server before the client can answer it).
        assert closing.type == WSMsgType.CLOSE and closing.data == 1001
        await socket.close()


class _RecordingSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def send_str(self, payload: str) -> None:
        self.sent.append(json.loads(payload))
        self.arrived.set()


async def test_expiry_is_pushed_at_expires_at_not_at_the_next_sweep(clock: FakeClock) -> None:
    hub = StatusHub(clock)
    sender = asyncio.create_task(hub.run_sender())
    session = PaymentSession("s" * 22, "alice", "demo", "simulator", "T", 1000, 0, "q",
                             SessionStatus.PAID, clock(), clock(), clock() + 50)
    socket = _RecordingSocket()
    hub.watch(socket, session)  # type: ignore[arg-type]
    clock.advance(0.05)  # the fake clock reaches expiresAt; the loop's timer follows
    await asyncio.wait_for(socket.arrived.wait(), timeout=5)
    assert socket.sent[0]["status"] == "expired" and socket.sent[0]["remainingTime"] == 0
    hub.unwatch(socket, session.session_id)  # type: ignore[arg-type]
    sender.cancel()
    hub.close()
