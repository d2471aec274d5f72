"""The app's long-lived resources: opened at start-up, closed at shutdown, and the
background sweeper doing its rounds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientWebSocketResponse, web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import CLOCK, GATE, METRICS, PROVIDER, SESSIONS, SWEEPER
from gateway.model import PaymentSession
from gateway.providers.simulator import SIGNATURE_HEADER
from gateway.settings import Settings, SettingsError
from tests.conftest import (
    API_KEY,
    REDIS_URL,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
    wait_until,
)
from tests.gate.conftest import buy


async def test_the_sweeper_marks_expired_sessions_and_tells_listeners(
        tmp_path: Path, make_viewer: AppFactory, clock: FakeClock) -> None:
    settings = make_settings(tmp_path, GATEWAY_CLEANUP_INTERVAL_SECONDS="1")
    viewer = await make_viewer(settings)
    qr = await viewer.generate_qris()
    app = viewer.http.app
    assert app is not None
    expired = asyncio.Event()

    def listen(session: PaymentSession) -> None:
        if session.session_id == qr["sessionId"] and session.status == "expired":
            expired.set()

    app[SESSIONS].add_listener(listen)
    clock.advance(1200)
    await asyncio.wait_for(expired.wait(), timeout=10)  # its next round, within 1 s
    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        (status,) = conn.execute("SELECT status FROM payment_sessions").fetchone()
    assert status == "expired"


async def test_shutdown_stops_the_sweeper(make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    app = viewer.http.app
    assert app is not None
    sweeper = app[SWEEPER]
    assert not sweeper.done()
    await viewer.http.close()
    assert sweeper.cancelled()


# --- several instances sharing a Redis store ------------------------------------------

Instances = tuple[ViewerClient, ViewerClient]


@pytest.fixture
async def two_instances(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    tmp_path: Path, clock: FakeClock, redis_prefix: str,
) -> Instances:
    """Two gateway processes' worth of app, each with its own var dir, on one store."""
    clients = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, GATEWAY_STORE=REDIS_URL,
                                 GATEWAY_REDIS_KEY_PREFIX=redis_prefix)
        clients.append(ViewerClient(await aiohttp_client(create_app(settings, clock=clock))))
    return clients[0], clients[1]


def _same_browser(here: ViewerClient, there: ViewerClient) -> None:
    """Behind one load balancer a browser sends the same cookies to every instance."""
    for cookie in here.http.session.cookie_jar:
        there.http.session.cookie_jar.update_cookies({cookie.key: cookie.value})


async def _until_status(socket: ClientWebSocketResponse, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await socket.receive_json()
            if message.get("status") == status:
                return message


async def test_a_payment_received_by_one_instance_reaches_a_socket_on_another(
        two_instances: Instances) -> None:
    here, there = two_instances
    qr = await here.generate_qris()
    async with here.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        assert (await socket.receive_json())["status"] == "pending"
        _same_browser(here, there)
        await there.pay(qr["trxId"])  # the provider's callback lands on the other one
        paid = await _until_status(socket, "paid")
    assert paid["sessionId"] == qr["sessionId"]


async def _revoke_elsewhere_then_wait(here: ViewerClient, there: ViewerClient,
                                      session_id: str) -> None:
    await there.call("POST", f"/api/sessions/{session_id}/revoke",
                     headers={"X-Api-Key": API_KEY}, expect=200)
    app = here.http.app
    assert app is not None
    await wait_until(lambda: app[GATE].access.is_ended(session_id), timeout_s=10)


async def test_a_session_revoked_on_one_instance_is_refused_by_the_others_gate(
        two_instances: Instances) -> None:
    here, there = two_instances
    access = await buy(here, "demo")
    playlist = access["tokenPlaybackUrl"]
    async with here.http.get(playlist) as response:
        assert response.status == 200
    await _revoke_elsewhere_then_wait(here, there, access["sessionId"])
    async with here.http.get(playlist) as response:
        assert response.status == 403
        assert response.headers["Cache-Control"] == "private, no-store"


async def test_the_change_feed_comes_back_after_redis_drops_it(
        two_instances: Instances) -> None:
    here, there = two_instances
    access = await buy(here, "demo")

    def both_feeds_up() -> bool:
        return all(instance.http.app is not None
                   and instance.http.app[METRICS].change_feed_up for instance in two_instances)

    await wait_until(both_feeds_up)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        # Every subscriber connection on the server: both instances lose their feed.
        assert await client.client_kill_filter(_type="pubsub") >= 2
    finally:
        await client.aclose()
    # Whether the revocation is heard on the resumed feed or read back when it resumes,
    # the gate here must come to refuse it.
    await _revoke_elsewhere_then_wait(here, there, access["sessionId"])
    async with here.http.get(access["tokenPlaybackUrl"]) as response:
        assert response.status == 403
    await wait_until(both_feeds_up, timeout_s=10)  # and it is back


async def test_instances_must_share_their_secrets(tmp_path: Path, redis_prefix: str) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_SECRET: must be set when instances"):
        Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_STORE": REDIS_URL,
                           "GATEWAY_REDIS_KEY_PREFIX": redis_prefix})


@pytest.mark.parametrize("copies", ["the same bytes", "signed anew each time"])
async def test_a_notification_delivered_200_times_at_once_to_two_instances_is_all_200(
        two_instances: Instances, copies: str) -> None:
    """A provider that timed out retries, and may deliver one notification many times
    over: each copy must hear 200 (a 5xx makes it retry for a day), one is applied.
    Signed anew, each copy is a duplicate event the ledger stores, not a replay."""
    here, there = two_instances
    qr = await here.generate_qris()
    app = here.http.app
    assert app is not None
    provider = app[PROVIDER]
    headers, body = provider.pay(qr["trxId"], qr["amount"])  # type: ignore[attr-defined]
    now_s = app[CLOCK]() // 1000

    def copy(n: int) -> dict[str, str]:
        if copies == "the same bytes":
            return headers
        signature = provider.signature(body, now_s - n)  # type: ignore[attr-defined]
        return headers | {SIGNATURE_HEADER: signature}

    async def deliver(instance: ViewerClient, n: int) -> int:
        async with instance.http.post("/api/payment-callback", data=body,
                                      headers=copy(n)) as response:
            await response.read()
            return response.status

    statuses = await asyncio.gather(*(deliver(here if n % 2 else there, n)
                                      for n in range(200)))
    assert sorted(set(statuses)) == [200], {s: statuses.count(s) for s in set(statuses)}
    assert (await here.status(qr["sessionId"]))["status"] == "paid"
    notifications = await here.call(
        "GET", "/api/notifications", params={"trxId": qr["trxId"], "limit": "1000"},
        headers={"X-Api-Key": API_KEY}, expect=200)
    of_this = [entry for entry in notifications["data"]["notifications"]
               if entry["trxId"] == qr["trxId"]]
    assert sum(entry["applied"] for entry in of_this) == 1
    assert len(of_this) == (1 if copies == "the same bytes" else 200)
