"""Liveness (/healthz: the process answers) and readiness (/readyz: its store too)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway.app import create_app
from tests.conftest import REDIS_URL, ViewerClient, make_settings


async def test_ready_when_the_store_answers(viewer: ViewerClient) -> None:
    assert (await viewer.call("GET", "/readyz", expect=200))["data"] == {"status": "ready"}


async def test_a_stalled_redis_makes_the_instance_unready_not_dead(
        tmp_path: Path, aiohttp_client: Any, redis_prefix: str) -> None:
    settings = make_settings(tmp_path, GATEWAY_STORE=REDIS_URL,
                             GATEWAY_REDIS_KEY_PREFIX=redis_prefix)
    viewer = ViewerClient(await aiohttp_client(create_app(settings)))
    await viewer.call("GET", "/readyz", expect=200)
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        # Redis answers nobody for 4 s, as when it stalls on a slow disk or a fork.
        await admin.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        # A 503 at all shows the check gave up before Redis came back, not that it hung.
        refused = await viewer.call("GET", "/readyz", expect=503)
        assert refused["code"] == "store_unavailable"
        await viewer.call("GET", "/healthz", expect=200)  # alive: don't restart it
        deadline = time.monotonic() + 10
        while True:  # ready again once Redis answers
            async with viewer.http.get("/readyz") as reply:
                if reply.status == 200:
                    break
            assert time.monotonic() < deadline, "never ready again"
            await asyncio.sleep(0.1)
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()


async def test_a_proxy_nobody_trusts_is_named_once_and_on_readyz(
        make_viewer: Any, tmp_path: Path, caplog: Any) -> None:
    """Behind nginx without GATEWAY_TRUSTED_PROXIES every viewer is nginx: one link
    plays everywhere as one place, everyone shares one QR budget. Nothing breaks
    loudly, so the service says so: one warning, and /readyz, naming the fix."""
    import logging

    caplog.set_level(logging.WARNING)
    viewer: ViewerClient = await make_viewer(make_settings(tmp_path))
    assert "warnings" not in (await viewer.call("GET", "/readyz", expect=200))["data"]
    for address in ("203.0.113.7", "203.0.113.8"):
        await viewer.call("GET", "/api/check-access", params={"streamId": "demo"},
                          headers={"X-Forwarded-For": address}, expect=200)
    assert [record.getMessage() for record in caplog.records].count("untrusted_proxy") == 1
    ready = (await viewer.call("GET", "/readyz", expect=200))["data"]
    assert ready["status"] == "ready"
    [hint] = ready["warnings"]
    assert "GATEWAY_TRUSTED_PROXIES=127.0.0.1" in hint


async def test_a_trusted_proxy_is_no_warning(make_viewer: Any, tmp_path: Path) -> None:
    viewer: ViewerClient = await make_viewer(make_settings(
        tmp_path, GATEWAY_TRUSTED_PROXIES="127.0.0.1"))
    await viewer.call("GET", "/api/check-access", params={"streamId": "demo"},
                      headers={"X-Forwarded-For": "203.0.113.7"}, expect=200)
    assert "warnings" not in (await viewer.call("GET", "/readyz", expect=200))["data"]
