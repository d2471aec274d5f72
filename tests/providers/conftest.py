"""Fixtures for adapter tests against local fakes of providers, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.keys import PROVIDER, RECONCILER
from gateway.providers.base import Provider
from gateway.reconcile import Reconciler
from gateway.settings import DEFAULT_CATALOG, Settings
from tests.conftest import AppFactory, FakeClock, ViewerClient, stored_notifications
from tests.providers.drivers import DRIVERS, Delivery, Driver
from tests.providers.harness import CallbackReceiver, FakeApi, Receiver, ServeFake, ServeReceiver

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def serve_fake(aiohttp_server: ServerFactory) -> AsyncIterator[ServeFake]:
    """Start a fake on a free port (its `base_url` then says where); at the end, let go of
    any request it was told to leave hanging, so its server can close."""
    served: list[FakeApi] = []

    async def serve(fake: FakeApi) -> None:
        fake.base_url = str((await aiohttp_server(fake.app())).make_url(""))
        served.append(fake)

    yield serve
    for fake in served:
        fake.hang.release()


@pytest.fixture
def serve_receiver(aiohttp_server: ServerFactory, clock: FakeClock) -> ServeReceiver:
    """Our callback endpoint in miniature, for one adapter: (receiver, its URL)."""

    async def serve(provider: Provider) -> Receiver:
        receiver = CallbackReceiver(provider, clock)
        server = await aiohttp_server(receiver.app())
        return receiver, str(server.make_url("/api/payment-callback"))

    return serve


# --- the whole flow: a provider's fake behind the real app ---------------------------

PRICE = 10_000  # the demo stream's, here: otomatis.vip sells nothing cheaper
WINDOW_S = 1200
ACCESS_MS = 7_200_000


@dataclass
class World:
    driver: Driver
    viewer: ViewerClient
    settings: Settings
    clock: FakeClock

    async def deliver(self, delivery: Delivery, expect: int = 200) -> dict[str, Any]:
        headers, body = delivery
        return await self.viewer.call("POST", "/api/payment-callback", data=body,
                                      headers=headers, expect=expect)

    @property
    def reconciler(self) -> Reconciler:
        app = self.viewer.http.server.app
        assert app is not None
        return app[RECONCILER]

    @property
    def provider(self) -> Provider:
        app = self.viewer.http.server.app
        assert app is not None
        return app[PROVIDER]

    async def ledger(self) -> list[tuple[str, str, int, bool, str]]:
        return await stored_notifications(self.settings)


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
def make_world(aiohttp_server: Any, settings: Settings, clock: FakeClock,
               make_viewer: AppFactory, tmp_path: Any) -> WorldFactory:
    # The demo catalog, with the demo stream at a price every provider sells.
    live = DEFAULT_CATALOG.parent / "live"
    catalog = tmp_path / "streams.toml"
    catalog.write_text(DEFAULT_CATALOG.read_text().replace("price = 1000\n",
                                                           f"price = {PRICE}\n")
                       .replace('"file:live/"', f'"file://{live}/"'))

    async def make(name: str, **overrides: Any) -> World:
        driver: Driver = DRIVERS[name](clock)
        server: TestServer = await aiohttp_server(driver.app)
        app_settings = replace(
            settings, provider=driver.name, streams_path=catalog,
            provider_url=str(server.make_url("")).rstrip("/"),
            provider_credentials=driver.credentials, provider_timeout_seconds=0.5,
            **driver.settings, **overrides)
        return World(driver, await make_viewer(app_settings), app_settings, clock)

    return make


@pytest.fixture(params=sorted(DRIVERS))
async def world(request: pytest.FixtureRequest, make_world: WorldFactory) -> World:
    return await make_world(request.param)
