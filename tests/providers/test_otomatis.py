"""otomatis.vip specifics: its callback is only a hint, confirmed by checkstatus; our
reference in the form its custom_ref accepts."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from gateway.errors import InvalidRequest, NotificationRejected
from gateway.model import new_session_id
from gateway.providers.base import TransactionState
from gateway.providers.otomatis import OtomatisProvider, custom_ref
from tests.conftest import FakeClock
from tests.providers.fake_otomatis import FakeOtomatis

USER, KEY = "tokotonton", "0c6f3a52-1d7e-4b8a-9f20-5e3b7c1d2a90"


@pytest.fixture
async def world(aiohttp_server: Any, clock: FakeClock,
                http: aiohttp.ClientSession) -> tuple[FakeOtomatis, OtomatisProvider]:
    fake = FakeOtomatis(USER, KEY, clock)
    server = await aiohttp_server(fake.app)
    provider = OtomatisProvider(USER, KEY, clock, base_url=str(server.make_url("")))
    await provider.open(http)
    return fake, provider


def test_our_reference_fits_custom_ref() -> None:
    for _ in range(50):
        ref = custom_ref(new_session_id())
        assert re.fullmatch(r"[A-Z0-9]{32}", ref)
    assert custom_ref("abc-DEF_1") != custom_ref("abc-DEF_2")


async def test_a_hint_is_applied_only_as_checkstatus_confirms(
        world: tuple[FakeOtomatis, OtomatisProvider], clock: FakeClock) -> None:
    fake, provider = world
    created = await provider.create_qris(new_session_id(), 1000, clock() + 1_200_000)
    # A claim of payment for an unpaid transaction: checkstatus says pending.
    _, claim = fake.callback(created.trx_id, status="success", amount=1000)
    note = await provider.authenticate({}, claim, clock())
    assert (note.reported_status, note.trx_id) == ("pending", created.trx_id)
    fake.pay(created.trx_id, 999)
    _, honest = fake.callback(created.trx_id, amount=1000)  # the body lies about it
    note = await provider.authenticate({}, honest, clock())
    assert (note.reported_status, note.amount) == ("paid", 999)  # checkstatus's amount
    kept = json.loads(note.raw_body)
    assert json.loads(kept["callback"])["amount"] == 1000
    assert json.loads(kept["checkstatus"])["amount"] == 999


async def test_hints_that_name_nothing_are_refused(
        world: tuple[FakeOtomatis, OtomatisProvider], clock: FakeClock) -> None:
    _, provider = world
    with pytest.raises(NotificationRejected):
        await provider.authenticate({}, b'{"trx_id": "03CNOSUCHTHING", "status": "success"}',
                                    clock())
    for body in (b"not json", b'{"status": "success"}', b'{"trx_id": "a/../b"}'):
        with pytest.raises(InvalidRequest):
            await provider.authenticate({}, body, clock())


@pytest.mark.parametrize("trx_id", [".", "..", ".hidden", "a/b", "a%2Fb", "x" * 65, ""])
async def test_the_status_api_is_never_asked_about_an_id_outside_the_grammar(
        world: tuple[FakeOtomatis, OtomatisProvider], clock: FakeClock, trx_id: str) -> None:
    """A `.` or `..` would be resolved away in the URL: our credentials would go to
    /api/checkstatus/ itself. Such a hint is refused before anyone is asked."""
    fake, provider = world
    body = json.dumps({"trx_id": trx_id, "status": "success"}).encode()
    with pytest.raises(InvalidRequest):
        await provider.authenticate({}, body, clock())
    assert (await provider.transaction_status(trx_id)).state == TransactionState.UNKNOWN
    assert fake.requests == []
