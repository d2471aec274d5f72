"""The simulator as a provider: valid dynamic QRIS, signed notifications it can verify,
and a status it can be asked for."""

from __future__ import annotations

import json

import pytest

from gateway import qris
from gateway.errors import InvalidRequest, NotificationRejected
from gateway.providers.base import RefundRequest, RefundStatus, TransactionState
from gateway.providers.simulator import SimulatorProvider
from gateway.qris import MerchantProfile
from tests.conftest import FakeClock


@pytest.fixture
def simulator(clock: FakeClock) -> SimulatorProvider:
    return SimulatorProvider(MerchantProfile(name="TOKO DEMO"), b"k" * 32, clock)


async def test_created_qris_is_valid_and_names_its_transaction(
        simulator: SimulatorProvider) -> None:
    created = await simulator.create_qris("session-1", 25000, 0)
    assert qris.problems_for_transaction(created.qr_string, 25000, created.trx_id) == []
    assert qris.parse(created.qr_string).get("59") == "TOKO DEMO"  # merchant data is ours
    assert created.fee == 0 and len(created.trx_id) <= 25


async def test_transaction_status_follows_payment(simulator: SimulatorProvider,
                                                  clock: FakeClock) -> None:
    created = await simulator.create_qris("session-1", 1000, 0)
    assert (await simulator.transaction_status(created.trx_id)).state == TransactionState.PENDING
    simulator.pay(created.trx_id, 1000)
    status = await simulator.transaction_status(created.trx_id)
    assert (status.state, status.amount, status.paid_at_ms) == (TransactionState.PAID, 1000,
                                                                 clock())
    assert (await simulator.transaction_status("NOPE")).state == TransactionState.UNKNOWN


async def test_its_own_notification_verifies_and_parses(simulator: SimulatorProvider,
                                                        clock: FakeClock) -> None:
    created = await simulator.create_qris("session-1", 1000, 0)
    headers, body = simulator.pay(created.trx_id, 1000)
    note = simulator.verify_notification(headers, body, clock())
    assert (note.trx_id, note.amount, note.reported_status) == (created.trx_id, 1000, "paid")
    assert note.event_id == json.loads(body)["eventId"] and note.replay_key


def test_a_notification_signed_with_another_key_is_refused(simulator: SimulatorProvider,
                                                           clock: FakeClock) -> None:
    other = SimulatorProvider(MerchantProfile(), b"x" * 32, clock)
    headers, body = other.pay("SIMX", 1000)
    with pytest.raises(NotificationRejected):
        simulator.verify_notification(headers, body, clock())


def test_an_authentic_but_unreadable_body_is_invalid(simulator: SimulatorProvider,
                                                     clock: FakeClock) -> None:
    body = b'{"eventId": "e", "trxId": "T", "amount": 1.5, "status": "paid"}'
    headers = {"X-Gateway-Signature": simulator.signature(body, clock() // 1000)}
    with pytest.raises(InvalidRequest):
        simulator.verify_notification(headers, body, clock())


async def test_it_refunds_at_once_never_more_than_was_paid(
        simulator: SimulatorProvider) -> None:
    assert simulator.refunds_by_api
    created = await simulator.create_qris("session-1", 1000, 0)
    unpaid = await simulator.refund(RefundRequest(created.trx_id, 1000, "test", "rf-sim-0001"))
    assert (unpaid.status, unpaid.failure_code) == (RefundStatus.FAILED, "not_paid")
    simulator.pay(created.trx_id, 1000)
    part = await simulator.refund(RefundRequest(created.trx_id, 400, "test", "rf-sim-0002"))
    assert part.status == RefundStatus.SUCCEEDED and part.provider_refund_id
    # The same key again: the same refund, not a second one.
    again = await simulator.refund(RefundRequest(created.trx_id, 400, "test", "rf-sim-0002"))
    assert again == part
    too_much = await simulator.refund(RefundRequest(created.trx_id, 601, "x", "rf-sim-0003"))
    assert (too_much.status, too_much.failure_code) == (RefundStatus.FAILED,
                                                        "more_than_remains")
    rest = await simulator.refund(RefundRequest(created.trx_id, 600, "x", "rf-sim-0004"))
    assert rest.status == RefundStatus.SUCCEEDED


@pytest.mark.parametrize("fields", [
    {"trx_id": "a/b"}, {"amount_rupiah": 0}, {"idempotency_key": "short"},
    {"idempotency_key": "has space in it"}, {"payment_id": "../x"},
])
def test_a_refund_request_is_checked_when_it_is_made(fields: dict[str, object]) -> None:
    arguments: dict[str, object] = {"trx_id": "SIMX", "amount_rupiah": 1000, "reason": "r",
                                    "idempotency_key": "rf-sim-0001", **fields}
    with pytest.raises(ValueError):
        RefundRequest(**arguments)  # type: ignore[arg-type]
