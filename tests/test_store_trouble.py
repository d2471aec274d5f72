"""Store trouble is answered, not crashed on: a Redis killed, paused (CLIENT PAUSE) or
busy (DEBUG SLEEP), or an SQLite file another process holds the write lock of, gives
503 `store_unavailable` with Retry-After within a bounded time, /readyz says not ready,
nothing acknowledged is lost, and the service recovers by itself. Load waits for a
connection instead of failing, and instances racing on one notification retry, never
answer 500.

The Redis faults run on a redis-server of the test's own (tests.conftest.PrivateRedis):
pausing or killing the machine's shared one would break everyone else's tests."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    FakeClock,
    PrivateRedis,
    ViewerClient,
    make_settings,
    stored_notifications,
)
from tests.handlers.test_payment_callback import event, signed

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
# Every answer must come within this, whatever the store does (its timeout is 1 s).
ANSWER_WITHIN = aiohttp.ClientTimeout(total=6)


def trouble_settings(tmp_path: Path, store_url: str, **overrides: str) -> Settings:
    return make_settings(tmp_path, GATEWAY_STORE=store_url, GATEWAY_STORE_TIMEOUT_SECONDS="1",
                         **overrides)


async def answer(viewer: ViewerClient, method: str, path: str,
                 **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with viewer.http.request(method, path, timeout=ANSWER_WITHIN, **kwargs) as response:
        return response.status, await response.json(), dict(response.headers)


async def assert_unavailable(viewer: ViewerClient, clock: FakeClock, qr: dict[str, Any],
                             *, reads_too: bool = True) -> None:
    """Every kind of request that needs the store, at once: each a 503 with Retry-After.
    (A foreign SQLite writer leaves reads working: WAL lets them through.)"""
    raw, headers = signed(event(qr, clock), clock() // 1000)
    answers = await asyncio.gather(
        answer(viewer, "POST", "/api/generate-qris", json={"streamId": "konser-malam"}),
        answer(viewer, "POST", "/api/payment-callback", data=raw, headers=headers),
        answer(viewer, "GET", "/readyz"),
        *([answer(viewer, "GET", "/api/check-access", params={"streamId": "demo"})]
          if reads_too else []),
    )
    for status, body, response_headers in answers:
        assert status == 503, body
        assert body["code"] == "store_unavailable"
        assert int(response_headers["Retry-After"]) > 0


async def assert_recovered(viewer: ViewerClient, clock: FakeClock, qr: dict[str, Any],
                           settings: Settings) -> None:
    """Ready again on its own; the provider's retry of the refused callback pays."""
    await wait_until_ready(viewer)
    raw, headers = signed(event(qr, clock), clock() // 1000)
    status, body, _ = await answer(viewer, "POST", "/api/payment-callback", data=raw,
                                   headers=headers)
    assert (status, body["data"]["reason"]) == (200, "paid")
    poll = await answer(viewer, "GET", "/api/payment-callback",
                        params={"trxId": qr["trxId"]}, headers={"X-Api-Key": API_KEY})
    assert poll[1]["data"]["status"] == "paid"
    assert [row[4] for row in await stored_notifications(settings)] == ["paid"]


@pytest.mark.parametrize("fault", ["client_pause", "debug_sleep", "kill"])
async def test_a_redis_in_trouble_is_a_503_and_then_recovers(
        aiohttp_client: ClientFactory, tmp_path: Path, clock: FakeClock,
        private_redis: PrivateRedis, fault: str) -> None:
    """Two instances on one Redis: both answer 503 while it is in trouble, both are
    ready again afterwards, and the notification refused by one is applied when the
    provider retries it at the other."""
    settings = trouble_settings(tmp_path / "a", private_redis.url)
    first = ViewerClient(await aiohttp_client(create_app(settings, clock=clock)))
    second = ViewerClient(await aiohttp_client(create_app(
        trouble_settings(tmp_path / "b", private_redis.url), clock=clock)))
    qr = await first.generate_qris()

    async def both_unavailable() -> None:
        await asyncio.gather(assert_unavailable(first, clock, qr),
                             assert_unavailable(second, clock, qr, reads_too=False))

    if fault == "kill":
        private_redis.kill()
        await both_unavailable()
        private_redis.start()  # same port, same append-only file
    elif fault == "client_pause":
        private_redis.command("CLIENT", "PAUSE", "4000", "ALL")
        await both_unavailable()
    else:
        sleeping = threading.Thread(target=private_redis.command,
                                    args=("DEBUG", "SLEEP", "4"))
        sleeping.start()
        try:
            await asyncio.sleep(0.2)  # let the server enter its sleep first
            await both_unavailable()
        finally:
            await asyncio.to_thread(sleeping.join)
    await wait_until_ready(first)
    await assert_recovered(second, clock, qr, settings)


async def test_a_foreign_sqlite_write_lock_is_a_503_and_then_recovers(
        aiohttp_client: ClientFactory, tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "gateway.db"
    settings = trouble_settings(tmp_path, f"sqlite:///{path}")
    viewer = ViewerClient(await aiohttp_client(create_app(settings, clock=clock)))
    qr = await viewer.generate_qris()
    other_process = sqlite3.connect(path, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # holds the write lock, as a backup might
    try:
        await assert_unavailable(viewer, clock, qr, reads_too=False)
        assert (await viewer.check_access())["hasAccess"] is False
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()
    await assert_recovered(viewer, clock, qr, settings)


async def test_500_new_viewers_at_once_all_get_their_qr(
        aiohttp_client: ClientFactory, tmp_path: Path, clock: FakeClock,
        private_redis: PrivateRedis) -> None:
    """More requests than the pool has connections: they wait their turn."""
    settings = make_settings(tmp_path, GATEWAY_STORE=private_redis.url,
                             GATEWAY_QR_RATE_PER_ADDRESS="0")
    client = await aiohttp_client(create_app(settings, clock=clock))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def new_viewer() -> int:
            async with session.post(client.make_url("/api/generate-qris"),
                                    json={"streamId": "demo"}) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(new_viewer() for _ in range(500)))
    assert statuses.count(201) == 500, {status: statuses.count(status) for status in statuses}


async def test_two_instances_racing_on_one_notification_never_answer_500(
        aiohttp_client: ClientFactory, tmp_path: Path, clock: FakeClock,
        private_redis: PrivateRedis) -> None:
    instances = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, GATEWAY_STORE=private_redis.url)
        instances.append(await aiohttp_client(create_app(settings, clock=clock)))
    qr = await ViewerClient(instances[0]).generate_qris()
    deliveries = []
    for copy in range(100):
        # The provider's retries: the same event, each signed anew (and a few sent twice).
        raw, headers = signed(event(qr, clock), clock() // 1000 - copy % 50)
        deliveries.append((instances[copy % 2], raw, headers))

    async def deliver(client: TestClient[web.Request, web.Application], raw: bytes,
                      headers: dict[str, str]) -> tuple[int, str]:
        async with client.post("/api/payment-callback", data=raw, headers=headers) as response:
            body = await response.json()
            return response.status, body["data"]["reason"] if body["success"] else body["code"]

    outcomes = await asyncio.gather(*(deliver(*delivery) for delivery in deliveries))
    assert {status for status, _ in outcomes} == {200}, outcomes
    reasons = [reason for _, reason in outcomes]
    assert reasons.count("paid") == 1 and reasons.count("duplicate_event") == 99
    ledger = await stored_notifications(settings)
    assert [row[4] for row in ledger].count("paid") == 1
    assert len(ledger) == 50  # each distinct delivery once; the copies sent twice, once


async def test_readiness_waits_for_the_store(aiohttp_client: ClientFactory, tmp_path: Path,
                                             private_redis: PrivateRedis) -> None:
    settings = trouble_settings(tmp_path, private_redis.url)
    viewer = ViewerClient(await aiohttp_client(create_app(settings)))
    assert (await answer(viewer, "GET", "/readyz"))[0] == 200
    private_redis.kill()
    assert (await answer(viewer, "GET", "/readyz"))[0] == 503
    assert (await answer(viewer, "GET", "/healthz"))[0] == 200  # alive, just not ready
    private_redis.start()
    await wait_until_ready(viewer)


async def wait_until_ready(viewer: ViewerClient) -> None:
    async def poll() -> None:
        while (await answer(viewer, "GET", "/readyz"))[0] != 200:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), 20)


async def test_a_redis_still_loading_its_data_is_a_503(
        aiohttp_client: ClientFactory, tmp_path: Path, private_redis: PrivateRedis) -> None:
    """A Redis restarting answers every command with LOADING until its data set is in
    memory (seconds, for a big one). Here that answer comes from a stand-in speaking
    the Redis protocol, after the instance started on the real server."""
    replies: list[bytes] = []

    async def loading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            replies.append(b"-LOADING Redis is loading the dataset in memory\r\n")
            writer.write(replies[-1])
        writer.close()

    settings = trouble_settings(tmp_path, private_redis.url)
    viewer = ViewerClient(await aiohttp_client(create_app(settings)))
    assert (await answer(viewer, "GET", "/readyz"))[0] == 200
    private_redis.kill()  # restarting: the port answers again, but only LOADING
    stand_in = await asyncio.start_server(loading, "127.0.0.1", private_redis.port,
                                          reuse_address=True)
    try:
        status, body, headers = await answer(viewer, "POST", "/api/generate-qris",
                                             json={"streamId": "demo"})
        assert (status, body["code"]) == (503, "store_unavailable")
        assert int(headers["Retry-After"]) > 0
        assert (await answer(viewer, "GET", "/readyz"))[0] == 503
        assert replies  # the stand-in was asked, and answered LOADING
    finally:
        stand_in.close()
        await stand_in.wait_closed()
