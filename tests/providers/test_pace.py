"""A provider's own 429 (Xendit's `RATE_LIMIT_EXCEEDED`, with Retry-After) through the
real app and the local Xendit: the buyer is put in line, never refused; every create
call waits for the pause the provider asked for; a refusal while serving the line puts
the buyer back where they stood. And the adapter's side: a 429 is ProviderRateLimited
with the provider's Retry-After."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.errors import ProviderRateLimited
from gateway.providers.xendit import XenditProvider
from tests.conftest import FakeClock
from tests.providers.drivers import XenditDriver
from tests.providers.fake_xendit import FakeXendit
from tests.test_line import qr_while_time_passes

SECRET_KEY = "xnd_development_" + "k" * 40


async def test_a_429_becomes_provider_rate_limited_with_its_retry_after(
        clock: FakeClock, serve_fake: Any, http: aiohttp.ClientSession) -> None:
    fake = FakeXendit(SECRET_KEY, "t" * 48, clock)
    await serve_fake(fake)
    xendit = XenditProvider(secret_key=SECRET_KEY, callback_token="t" * 48, http=http,
                            clock=clock, base_url=fake.base_url)
    fake.rate_per_minute, fake.retry_after_s = 2, 7
    for n in range(2):
        await xendit.create_qris(f"sess-{n}", 10_000, clock() + 1_200_000)
    with pytest.raises(ProviderRateLimited) as refused:
        await xendit.create_qris("sess-2", 10_000, clock() + 1_200_000)
    assert refused.value.params["retry_after_s"] == 7
    clock.advance(60)  # a sliding minute later: room again
    await xendit.create_qris("sess-3", 10_000, clock() + 1_200_000)


async def test_a_429_puts_the_buyer_in_line_and_pauses_every_create_call(
        make_world: Any, clock: FakeClock) -> None:
    world = await make_world("xendit", provider_rate_per_minute=600)
    driver = world.driver
    assert isinstance(driver, XenditDriver)
    fake = driver.fake
    started_ms = clock()
    # Refused on the direct call, and again when the line first serves the buyer.
    fake.rate_limited_next, fake.retry_after_s = 2, 3
    place = await world.viewer.generate_qris(expect=202)
    assert place == {"queued": True, "streamId": "demo", "position": 1, "etaSeconds": 3,
                     "etaAtLeast": False}
    async with world.viewer.http.ws_connect("/ws?streamId=demo") as socket:
        told = await socket.receive_json(timeout=5)
        assert told["type"] == "queue" and told["position"] == 1
        qr = await qr_while_time_passes(socket, clock, step_ms=500)
    # Twice 3 s of pause, then made: once, for this one buyer.
    assert 6000 <= clock() - started_ms <= 7000
    assert fake.refused_creates == 2 and len(fake.create_times_ms) == 1
    again = await world.viewer.generate_qris(expect=200)
    assert again["sessionId"] == qr["sessionId"]

