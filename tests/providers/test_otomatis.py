"""otomatis.vip specifics: its callback is only a hint, confirmed by checkstatus (which
needs the uuid, the client name and the client's key); its times in every form it
sends; withdrawal callbacks kept, never applied; our reference in the form its
custom_ref accepts."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from gateway.errors import (
    InvalidRequest,
    NotificationRejected,
    ProviderBadResponse,
    ProviderUnavailable,
)
from gateway.model import UNCONFIRMED_STATUS, new_session_id
from gateway.providers.base import TransactionState
from gateway.providers.otomatis import OtomatisProvider, custom_ref
from gateway.providers.values import provider_time_ms
from tests.conftest import FakeClock
from tests.providers.fake_otomatis import TIME_FORMS, FakeOtomatis

USER, KEY = "tokotonton", "0c6f3a52-1d7e-4b8a-9f20-5e3b7c1d2a90"
CLIENT, CLIENT_KEY = "toko-tonton", "ck-7d1e2f3a4b5c6d7e8f90"
PRICE = 25000

World = tuple[FakeOtomatis, OtomatisProvider]


@pytest.fixture
async def world(aiohttp_server: Any, clock: FakeClock, http: aiohttp.ClientSession) -> World:
    fake = FakeOtomatis(USER, KEY, CLIENT, CLIENT_KEY, clock)
    server = await aiohttp_server(fake.app)
    provider = OtomatisProvider(USER, KEY, CLIENT, CLIENT_KEY, clock,
                                base_url=str(server.make_url("")))
    await provider.open(http)
    return fake, provider


def test_our_reference_fits_custom_ref() -> None:
    for _ in range(50):
        ref = custom_ref(new_session_id())
        assert re.fullmatch(r"[A-Z0-9]{32}", ref)
    assert custom_ref("abc-DEF_1") != custom_ref("abc-DEF_2")


async def test_checkstatus_sends_the_uuid_the_client_and_the_clients_key(
        world: World, clock: FakeClock, aiohttp_server: Any,
        http: aiohttp.ClientSession) -> None:
    fake, provider = world
    created = await provider.create_qris(new_session_id(), PRICE, clock() + 1_200_000)
    assert (await provider.transaction_status(created.trx_id)).state == TransactionState.PENDING
    [(_, sent)] = [(path, body) for path, body in fake.requests if "checkstatus" in path]
    assert sent == {"uuid": KEY, "client": CLIENT, "client_key": CLIENT_KEY}
    # What the adapter used to send (the username as client, the uuid as client_key)
    # finds nothing: no payment would ever have been confirmed.
    server = await aiohttp_server(fake.app)
    wrong = OtomatisProvider(USER, KEY, USER, KEY, clock, base_url=str(server.make_url("")))
    await wrong.open(http)
    assert (await wrong.transaction_status(created.trx_id)).state == TransactionState.UNKNOWN


async def test_a_price_under_its_minimum_is_refused_by_it(world: World,
                                                         clock: FakeClock) -> None:
    _, provider = world
    with pytest.raises(ProviderBadResponse, match="generate refused"):
        await provider.create_qris(new_session_id(), 9_999, clock() + 1_200_000)


async def test_a_hint_is_applied_only_as_checkstatus_confirms(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    created = await provider.create_qris(new_session_id(), PRICE, clock() + 1_200_000)
    # A claim of payment for an unpaid transaction: checkstatus says pending.
    _, claim = fake.callback(created.trx_id, status="success", amount=PRICE)
    note = await provider.authenticate({}, claim, clock())
    assert (note.reported_status, note.trx_id) == ("pending", created.trx_id)
    fake.pay(created.trx_id, PRICE - 1)
    _, honest = fake.callback(created.trx_id, amount=PRICE)  # the body lies about it
    note = await provider.authenticate({}, honest, clock())
    assert (note.reported_status, note.amount) == ("paid", PRICE - 1)  # checkstatus's
    kept = json.loads(note.raw_body)
    assert json.loads(kept["notification"])["amount"] == PRICE
    assert json.loads(kept["status"])["amount"] == PRICE - 1


async def test_a_hint_checkstatus_cannot_confirm_now_is_kept_unconfirmed(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    created = await provider.create_qris(new_session_id(), PRICE, clock() + 1_200_000)
    fake.pay(created.trx_id)
    _, body = fake.callback(created.trx_id)
    fake.failure = "500"
    note = await provider.authenticate({}, body, clock())
    assert (note.reported_status, note.trx_id) == (UNCONFIRMED_STATUS, created.trx_id)
    assert note.event_id == f"unconfirmed:{created.trx_id}" and note.raw_body == body.decode()
    # Unsigned, and unheard: only one naming our uuid (a secret) is worth keeping.
    _, anyones = fake.callback(created.trx_id, merchant_id="M001")
    with pytest.raises(ProviderUnavailable):
        await provider.authenticate({}, anyones, clock())


@pytest.mark.parametrize("form", sorted(TIME_FORMS))
async def test_its_times_are_read_in_every_form_it_sends(
        world: World, clock: FakeClock, form: str) -> None:
    fake, provider = world
    fake.status_time_form = form
    created = await provider.create_qris(new_session_id(), PRICE, clock() + 1_200_000)
    clock.advance(90)
    fake.pay(created.trx_id)
    status = await provider.transaction_status(created.trx_id)
    assert status.paid_at_ms == clock() // 1000 * 1000


@pytest.mark.parametrize(("text", "utc"), [
    ("2023-07-31T08:49:56", "2023-07-31T01:49:56"),  # no zone: WIB
    ("2023-07-31 08:49:56", "2023-07-31T01:49:56"),
    ("2023-07-31T08:49:56.250", "2023-07-31T01:49:56.250"),
    ("2023-07-31T08:49:56.123456789", "2023-07-31T01:49:56.123"),
    ("2024-05-06T09:35:44.000Z", "2024-05-06T09:35:44"),
    ("2024-05-06T16:35:44+07:00", "2024-05-06T09:35:44"),
])
def test_a_time_without_a_zone_is_western_indonesia_time(text: str, utc: str) -> None:
    from datetime import UTC, datetime

    expected = datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp() * 1000
    assert provider_time_ms(text) == int(expected)


@pytest.mark.parametrize("text", ["2023-07-31", "31/07/2023 08:49", "2023-02-30 10:00:00",
                                  "", "yesterday", None, 1690793396])
def test_what_is_not_such_a_time_is_none(text: object) -> None:
    assert provider_time_ms(text) is None


async def test_a_withdrawal_callback_is_kept_and_applied_to_nothing(
        world: World, clock: FakeClock) -> None:
    fake, provider = world
    _, body = fake.withdrawal_callback(250_000, partner_ref_no="WD0001")
    note = await provider.authenticate({}, body, clock())
    assert (note.reported_status, note.trx_id, note.amount) == ("withdrawal", "", 250_000)
    assert note.event_id == "withdrawal:WD0001:success" and note.paid_at_ms == clock()
    assert note.raw_body == body.decode()
    assert not [path for path, _ in fake.requests if "checkstatus" in path]
    # Unsigned: only one naming our uuid (a secret) counts.
    _, forged = fake.withdrawal_callback(250_000, merchant_id="someone-else")
    with pytest.raises(NotificationRejected):
        await provider.authenticate({}, forged, clock())


async def test_hints_that_name_nothing_are_refused(world: World, clock: FakeClock) -> None:
    _, provider = world
    with pytest.raises(NotificationRejected):
        await provider.authenticate({}, b'{"trx_id": "03CNOSUCHTHING", "status": "success"}',
                                    clock())
    for body in (b"not json", b'{"status": "success"}', b'{"trx_id": "a/../b"}', b"[1]",
                 b'{"partner_ref_no": "a/b", "merchant_id": "' + KEY.encode() + b'"}'):
        with pytest.raises(InvalidRequest):
            await provider.authenticate({}, body, clock())


@pytest.mark.parametrize("trx_id", [".", "..", ".hidden", "a/b", "a%2Fb", "x" * 65, ""])
async def test_the_status_api_is_never_asked_about_an_id_outside_the_grammar(
        world: World, clock: FakeClock, trx_id: str) -> None:
    """A `.` or `..` would be resolved away in the URL: our credentials would go to
    /api/checkstatus/ itself. Such a hint is refused before anyone is asked."""
    fake, provider = world
    body = json.dumps({"trx_id": trx_id, "status": "success"}).encode()
    with pytest.raises(InvalidRequest):
        await provider.authenticate({}, body, clock())
    assert (await provider.transaction_status(trx_id)).state == TransactionState.UNKNOWN
    assert fake.requests == []
