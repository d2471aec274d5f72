"""Never paid out twice, even when the service is killed (`kill -9`) between asking the
provider for a refund and writing its answer down: 20 times, on SQLite and on Redis,
against Midtrans' fake (a real `gateway serve` process, restarted each time). The
refund was written, with its key, before the provider was asked; after the restart it
is asked again with the same key, which the provider honours once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import (
    API_KEY,
    REDIS_URL,
    SECRET,
    WEBHOOK_SECRET,
    FakeClock,
    redis_keyspace,
)
from tests.providers.fake_midtrans import FakeMidtrans
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

SERVER_KEY = "SB-Mid-server-TEST0123456789"
CYCLES = 20
OPERATOR = {"X-Api-Key": API_KEY}


class WallClock(FakeClock):
    def __call__(self) -> int:
        return int(time.time() * 1000)


@pytest.fixture(params=["sqlite", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path
                    ) -> AsyncIterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"GATEWAY_STORE": f"sqlite:///{tmp_path / 'g.db'}"}
        return
    async with redis_keyspace() as prefix:
        yield {"GATEWAY_STORE": REDIS_URL, "GATEWAY_REDIS_KEY_PREFIX": prefix}


async def test_a_refund_interrupted_by_kill_9_is_paid_out_once(
        tmp_path: Path, store_url: dict[str, str]) -> None:
    fake = FakeMidtrans(SERVER_KEY, WallClock())
    fake.delay_s = 60  # the refund's answer, held until the service is gone
    fake_server = TestServer(fake.app)
    await fake_server.start_server()
    server = ServerProcess({
        "GATEWAY_VAR_DIR": str(tmp_path / "var"), "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET, "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_PROVIDER": "midtrans", "GATEWAY_MIDTRANS_SERVER_KEY": SERVER_KEY,
        "GATEWAY_PROVIDER_URL": str(fake_server.make_url("")).rstrip("/"),
        "GATEWAY_REFUND_RETRY_SECONDS": "1", **store_url,
    }, log_path=tmp_path / "gateway.log")
    trx_ids: list[str] = []
    try:
        await asyncio.to_thread(server.start)
        async with aiohttp.ClientSession(server.url) as http:
            for cycle in range(CYCLES):
                trx_ids.append(await _paid_ticket(http, fake, f"viewer-{cycle}"))
                trx_id = trx_ids[-1]
                fake.refund_answer_lost = True
                asked = asyncio.create_task(http.post(
                    "/api/refunds", headers=OPERATOR, json={"trxId": trx_id,
                                                            "reason": "cycle"}))
                await _until(lambda: _refund_calls(fake, trx_ids[-1]) == 1)
                await asyncio.to_thread(server.kill9)  # the answer is never written down
                fake.refund_answer_lost = False
                with pytest.raises(aiohttp.ClientError):
                    await asked
                await asyncio.to_thread(server.start)
                await _until(lambda: _refund_succeeded(http, trx_ids[-1]), timeout_s=20)
        for trx_id in trx_ids:
            refunds = fake.transactions[trx_id].get("refunds", [])
            assert [entry["refund_amount"] for entry in refunds] == ["1000.00"], trx_id
            assert _refund_calls(fake, trx_id) == 2  # asked twice, with one key, paid once
            keys = {request[3]["refund_key"] for request in fake.requests
                    if request[1].endswith(f"/{trx_id}/refund/online/direct")}
            assert len(keys) == 1
    finally:
        server.stop()
        await fake_server.close()
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()


async def _paid_ticket(http: aiohttp.ClientSession, fake: FakeMidtrans, user_id: str) -> str:
    async with http.post("/api/generate-qris", headers=OPERATOR,
                         json={"streamId": "demo", "userId": user_id}) as response:
        assert response.status == 201, await response.text()
        trx_id: str = (await response.json())["data"]["trxId"]
    fake.settle(trx_id)
    headers, body = fake.notification(trx_id)
    async with http.post("/api/payment-callback", data=body, headers=headers) as response:
        assert (await response.json())["data"]["applied"] is True
    return trx_id


def _refund_calls(fake: FakeMidtrans, trx_id: str) -> int:
    return sum(1 for request in fake.requests
               if request[1].endswith(f"/{trx_id}/refund/online/direct"))


async def _refund_succeeded(http: aiohttp.ClientSession, trx_id: str) -> bool:
    async with http.get("/api/refunds", headers=OPERATOR,
                        params={"trxId": trx_id}) as response:
        refunds: list[dict[str, Any]] = (await response.json())["data"]["refunds"]
    return [refund["status"] for refund in refunds] == ["succeeded"]


async def _until(condition: Callable[[], bool | Awaitable[bool]],
                 timeout_s: float = 10) -> None:
    """Until `condition()` holds (awaited when it is a coroutine): what the test waits
    for is another process, so it asks again every 50 ms."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
