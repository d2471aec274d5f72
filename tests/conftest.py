"""Shared fixtures: the real app on a real SQLite file, driven over HTTP, with a clock
the test moves instead of waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient, TestServer

from gateway.app import create_app
from gateway.media_routes import open_media_door
from gateway.settings import Settings
from gateway.store import open_store

API_KEY = "test-api-key-0123456789abcdef"
SECRET = "s" * 40
WEBHOOK_SECRET = "w" * 40
START_MS = 1_800_000_000_000
IN_CI = bool(os.environ.get("CI"))


class FakeClock:
    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _served_as_gateway_serve_does(server: BaseTestServer[Any]) -> None:
    """What `gateway.serve` does to its runner, on a test server: the media door."""
    if isinstance(server.runner, web.AppRunner):
        open_media_door(server.runner)


@pytest.fixture
def aiohttp_server(aiohttp_server: Callable[..., Awaitable[TestServer]]
                   ) -> Callable[..., Awaitable[TestServer]]:
    """pytest-aiohttp's, serving the app the way `gateway serve` does."""

    async def serve(*args: Any, **kwargs: Any) -> TestServer:
        server = await aiohttp_server(*args, **kwargs)
        _served_as_gateway_serve_does(server)
        return server

    return serve


@pytest.fixture
def aiohttp_client(aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
                   ) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """pytest-aiohttp's, serving the app the way `gateway serve` does."""

    async def connect(*args: Any, **kwargs: Any) -> TestClient[Any, Any]:
        client = await aiohttp_client(*args, **kwargs)
        _served_as_gateway_serve_does(client.server)
        return client

    return connect


def make_settings(tmp_path: Path, **overrides: str) -> Settings:
    env = {
        "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        "GATEWAY_STORE": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_ACCESS_SECONDS": "7200",
        "GATEWAY_PAYMENT_WINDOW_SECONDS": "1200",
    }
    env.update(overrides)
    return Settings.from_env(env)


@pytest.fixture(params=["sqlite", "redis"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """The app's settings, once on each store backend: every test of the HTTP API runs
    against SQLite and against Redis."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    async with redis_keyspace() as prefix:
        yield make_settings(tmp_path, GATEWAY_STORE=REDIS_URL,
                            GATEWAY_REDIS_KEY_PREFIX=prefix)


def store_snapshot(settings: Settings) -> list[Any]:
    """Everything the store holds, to show that a request changed nothing. Rate-limit
    counters are left out: counting a refused or failed attempt is their job."""
    if settings.store_url.startswith("sqlite:///"):
        with sqlite3.connect(settings.store_url.removeprefix("sqlite:///")) as conn:
            return [conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                    for table in ("payment_sessions", "provider_notifications",
                                  "playback_grants", "device_places")]
    import redis

    client = redis.Redis.from_url(settings.store_url)
    try:
        keys = sorted(key for key in client.scan_iter(match=f"{settings.redis_key_prefix}*",
                                                      count=1000)
                      if not key.startswith(f"{settings.redis_key_prefix}rate:".encode()))
        return [(key, client.dump(key)) for key in keys]
    finally:
        client.close()


async def stored_notifications(settings: Settings) -> list[tuple[str, str, int, bool, str]]:
    """The notification ledger as the store reports it, oldest first."""
    store = await open_store(settings.store_url, settings.redis_key_prefix)
    try:
        ledger = await store.ledger.notifications(limit=1000)
    finally:
        await store.close()
    return [(n.notification.event_id, n.notification.trx_id, n.notification.amount,
             n.applied, n.reason) for n in reversed(ledger)]


class ViewerClient:
    """One browser: its own cookie jar, talking to the real app."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.http = client

    async def call(self, method: str, path: str, *, expect: int | None = None,
                   **kwargs: Any) -> dict[str, Any]:
        async with self.http.request(method, path, **kwargs) as response:
            body = await response.json()
            if expect is not None:
                assert response.status == expect, (response.status, body)
            return body

    async def generate_qris(self, stream_id: str = "demo", *, expect: int | None = 201,
                            **fields: Any) -> dict[str, Any]:
        body = await self.call("POST", "/api/generate-qris", expect=expect,
                               json={"streamId": stream_id, **fields})
        return body["data"] if body["success"] else body

    async def pay(self, trx_id: str, *, expect: int = 200, **fields: Any) -> dict[str, Any]:
        body = await self.call("POST", f"/simulator/pay/{trx_id}", expect=expect, json=fields)
        return body["data"] if body["success"] else body

    async def check_access(self, stream_id: str = "demo", session_id: str | None = None,
                           *, expect: int = 200) -> dict[str, Any]:
        params = {"streamId": stream_id}
        if session_id:
            params["sessionId"] = session_id
        body = await self.call("GET", "/api/check-access", params=params, expect=expect)
        return body["data"] if body["success"] else body

    async def status(self, session_id: str, *, expect: int = 200) -> dict[str, Any]:
        body = await self.call("GET", "/api/payment-callback",
                               params={"sessionId": session_id}, expect=expect)
        return body["data"] if body["success"] else body


AppFactory = Callable[..., Awaitable[ViewerClient]]


@pytest.fixture
async def make_viewer(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    settings: Settings, clock: FakeClock,
) -> AppFactory:
    """make_viewer() starts the app once; each further call is another browser on it."""
    server: list[BaseTestServer[web.Request]] = []

    async def make(app_settings: Settings | None = None) -> ViewerClient:
        if not server:
            client = await aiohttp_client(create_app(app_settings or settings, clock=clock))
            server.append(client.server)
            return ViewerClient(client)
        return ViewerClient(await aiohttp_client(server[0]))

    return make


@pytest.fixture
async def viewer(make_viewer: AppFactory) -> ViewerClient:
    return await make_viewer()


@pytest.fixture
async def other_viewer(viewer: ViewerClient, make_viewer: AppFactory) -> ViewerClient:
    return await make_viewer()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    """Wait for a condition the test controls, not for time to pass."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def require_tool(name: str) -> str:
    """The path of an external tool. In CI its absence fails the test; elsewhere the test
    is skipped, and the summary at the end says so loudly."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"NOT TESTED: {name} is not installed (apt-get install {name})")
    return path


# A database of its own on the machine's Redis; every test works under a fresh prefix.
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis() -> str:
    """The test Redis URL. Unreachable in CI fails the test; elsewhere it is skipped,
    and the summary at the end says so loudly."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is required in CI: {exc}")
        pytest.skip(f"NOT TESTED: no Redis at {REDIS_URL} ({exc}); "
                    "set GATEWAY_TEST_REDIS_URL")
    finally:
        client.close()
    return REDIS_URL


@contextlib.asynccontextmanager
async def redis_keyspace() -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    import redis.asyncio as aioredis

    require_redis()
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    async with redis_keyspace() as prefix:
        yield prefix


def pytest_terminal_summary(terminalreporter: Any) -> None:
    import sys

    fuzz = sys.modules.get("tests.test_fuzz")
    summary = fuzz.fuzz_summary() if fuzz is not None else []
    if summary:
        terminalreporter.write_sep("-", "fuzzer")
        for line in summary:
            terminalreporter.write_line(line)
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [report for report in skipped if "NOT TESTED" in str(report.longrepr)]
    if missing:
        terminalreporter.write_sep(
            "!", f"{len(missing)} TESTS DID NOT RUN: tools or services missing",
            red=True, bold=True)
        for report in missing:
            terminalreporter.write_line(f"  {report.nodeid}: {report.longrepr[2]}")


class PrivateRedis:
    """A redis-server of the test's own, on a free port: for faults (kill, CLIENT PAUSE,
    DEBUG SLEEP) that would disturb everyone else's tests on the machine's Redis.
    Append-only with fsync on every write, so a kill loses nothing acknowledged."""

    def __init__(self, binary: str, directory: Path) -> None:
        from tests.server_process import free_port

        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self._directory),
             "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.command("PING")
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)  # polling for readiness, not for a result

    def command(self, *args: Any) -> Any:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=30, socket_connect_timeout=1)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(require_tool("redis-server"), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
