"""A payment survives `kill -9` of a real server process: restart it, access holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.server_process import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # No GATEWAY_SECRET: the generated one must be kept in var/ across the restart too.
    env = {"GATEWAY_VAR_DIR": str(tmp_path / "var"),
           "GATEWAY_STORE": f"sqlite:///{tmp_path / 'var' / 'gateway.db'}"}
    process = ServerProcess(env, log_path=tmp_path / "server.log")
    yield process
    process.stop()


@pytest.mark.slow
async def test_access_survives_kill_9_and_restart(server: ServerProcess) -> None:
    server.start()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(server.url, cookie_jar=jar) as browser:
        async with browser.post("/api/generate-qris", json={"streamId": "demo"}) as response:
            assert response.status == 201
            qr = (await response.json())["data"]
        async with browser.post(f"/simulator/pay/{qr['trxId']}") as response:
            assert (await response.json())["data"]["applied"] is True

        server.kill9()
        server.start()

        params = {"streamId": "demo", "sessionId": qr["sessionId"]}
        async with browser.get("/api/check-access", params=params) as response:
            access = (await response.json())["data"]
        assert access["hasAccess"] is True
        assert 7_100_000 < access["remainingTime"] <= 7_200_000
        async with browser.post("/api/generate-qris", json={"streamId": "demo"}) as response:
            assert response.status == 409
