"""Fixtures for adapter tests against local fakes of providers, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.providers.base import Provider
from tests.conftest import FakeClock
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
