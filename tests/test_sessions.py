"""The session rules (SPEC rules 1-5) on a real in-memory store, with a clock the test
moves: expiry is checked exactly, without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.catalog import Catalog
from gateway.errors import (
    AlreadyHasAccess,
    AmountMismatch,
    NotYours,
    ProviderReturnedInvalidQris,
    SessionNotFound,
    UnknownStream,
)
from gateway.model import Notification, NotificationReason, PaymentSession, SessionStatus
from gateway.providers.base import CreatedQris
from gateway.providers.simulator import SimulatorProvider
from gateway.qris import MerchantProfile
from gateway.sessions import SessionService
from gateway.settings import DEFAULT_CATALOG
from gateway.store.base import Store
from gateway.store.sqlite import open_sqlite
from tests.conftest import FakeClock

ACCESS_S = 7200
WINDOW_S = 1200


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_sqlite(":memory:")
    yield opened
    await opened.close()


@pytest.fixture
async def domain(store: Store, clock: FakeClock) -> SessionService:
    provider = SimulatorProvider(MerchantProfile(), b"k" * 32, clock)
    return SessionService(store.sessions, store.changes, provider,
                          Catalog.load(DEFAULT_CATALOG), clock,
                          access_seconds=ACCESS_S, payment_window_seconds=WINDOW_S,
                          unpaid_retention_seconds=3600)


def paid(session: PaymentSession, clock: FakeClock, *, event_id: str = "evt-1",
         amount: int | None = None, status: str = "paid") -> Notification:
    return Notification("simulator", event_id, session.trx_id,
                        session.amount if amount is None else amount, status,
                        clock(), clock(), "{}")


async def test_a_qr_request_creates_a_pending_session_at_the_catalog_price(
        domain: SessionService, clock: FakeClock) -> None:
    session, created = await domain.request_qr("alice", "konser-malam", None)
    assert created and session.status == SessionStatus.PENDING
    assert session.amount == 25000  # from the catalog, never from the client
    assert session.expires_at_ms == clock() + WINDOW_S * 1000
    assert len(session.session_id) >= 22  # 128 random bits, base64url


async def test_amount_must_equal_the_price_and_streams_must_exist(
        domain: SessionService) -> None:
    with pytest.raises(AmountMismatch):
        await domain.request_qr("alice", "demo", 1)
    with pytest.raises(UnknownStream):
        await domain.request_qr("alice", "no-such-stream", None)
    assert await domain.active_sessions("alice") == []


async def test_asking_again_returns_the_same_payable_qr(domain: SessionService) -> None:
    first, _ = await domain.request_qr("alice", "demo", None)
    again, created = await domain.request_qr("alice", "demo", 1000)
    assert not created and again == first
    other_stream, created = await domain.request_qr("alice", "konser-malam", None)
    assert created and other_stream.session_id != first.session_id


async def test_an_expired_qr_is_replaced_by_a_new_one(
        domain: SessionService, clock: FakeClock) -> None:
    first, _ = await domain.request_qr("alice", "demo", None)
    clock.advance(WINDOW_S)
    assert first.status_at(clock()) == SessionStatus.EXPIRED  # exact, no sweep needed
    second, created = await domain.request_qr("alice", "demo", None)
    assert created and second.session_id != first.session_id


async def test_paid_access_lasts_exactly_the_access_window_from_payment(
        domain: SessionService, clock: FakeClock) -> None:
    session, _ = await domain.request_qr("alice", "demo", None)
    clock.advance(300)
    paid_at = clock()
    decision = await domain.record_notification(paid(session, clock))
    assert decision.applied and decision.reason == NotificationReason.PAID

    access = await domain.check_access("alice", "demo", session.session_id)
    assert access.has_access and access.remaining_ms == ACCESS_S * 1000
    with pytest.raises(AlreadyHasAccess):
        await domain.request_qr("alice", "demo", None)

    clock.now_ms = paid_at + ACCESS_S * 1000 - 1
    assert (await domain.check_access("alice", "demo", None)).remaining_ms == 1
    clock.advance(0.001)
    access = await domain.check_access("alice", "demo", session.session_id)
    assert not access.has_access and access.remaining_ms == 0
    renewed, created = await domain.request_qr("alice", "demo", None)
    assert created and renewed.status == SessionStatus.PENDING


async def test_access_needs_owner_stream_and_payment(domain: SessionService,
                                                     clock: FakeClock) -> None:
    session, _ = await domain.request_qr("alice", "demo", None)
    assert not (await domain.check_access("alice", "demo", session.session_id)).has_access
    await domain.record_notification(paid(session, clock))
    assert not (await domain.check_access("alice", "konser-malam",
                                          session.session_id)).has_access
    with pytest.raises(NotYours):
        await domain.check_access("bob", "demo", session.session_id)
    with pytest.raises(SessionNotFound):
        await domain.check_access("alice", "demo", "x" * 22)
    assert not (await domain.check_access("bob", "demo", None)).has_access


async def test_a_wrong_amount_or_a_non_payment_pays_nothing(
        domain: SessionService, store: Store, clock: FakeClock) -> None:
    session, _ = await domain.request_qr("alice", "demo", None)
    short = await domain.record_notification(paid(session, clock, amount=999))
    failed = await domain.record_notification(paid(session, clock, event_id="e2",
                                                   status="failed"))
    assert (short.applied, short.reason) == (False, NotificationReason.AMOUNT_MISMATCH)
    assert (failed.applied, failed.reason) == (False, NotificationReason.NOT_A_PAYMENT)
    assert not (await domain.check_access("alice", "demo", None)).has_access
    reasons = [n.reason for n in await store.ledger.notifications(session.trx_id)]
    assert reasons == ["not_a_payment", "amount_mismatch"]


async def test_payment_after_the_window_still_buys_the_full_access_window(
        domain: SessionService, clock: FakeClock) -> None:
    session, _ = await domain.request_qr("alice", "demo", None)
    clock.advance(WINDOW_S + 600)
    await domain.sweep()  # the sweeper has marked it expired meanwhile
    decision = await domain.record_notification(paid(session, clock))
    assert decision.applied and decision.reason == NotificationReason.PAID_AFTER_WINDOW
    access = await domain.check_access("alice", "demo", session.session_id)
    assert access.has_access and access.remaining_ms == ACCESS_S * 1000


async def test_listeners_hear_payments_and_expiries(domain: SessionService,
                                                    clock: FakeClock) -> None:
    heard: list[tuple[str, str]] = []
    domain.add_listener(lambda s: heard.append((s.session_id, s.status.value)))
    domain.add_listener(lambda s: 1 / 0)  # a broken listener does not stop the others
    session, _ = await domain.request_qr("alice", "demo", None)
    await domain.record_notification(paid(session, clock))
    clock.advance(ACCESS_S)
    report = await domain.sweep()
    assert report.expired == 1
    assert heard == [(session.session_id, "paid"), (session.session_id, "expired")]


async def test_sweep_prunes_unpaid_sessions_after_the_retention(
        domain: SessionService, store: Store, clock: FakeClock) -> None:
    session, _ = await domain.request_qr("alice", "demo", None)
    clock.advance(WINDOW_S)
    assert (await domain.sweep()).pruned == 0  # kept a while: a late payment may come
    clock.advance(3600 + 1)
    assert (await domain.sweep()).pruned == 1
    assert await store.sessions.get(session.session_id) is None


async def test_a_provider_payload_that_is_not_valid_qris_is_never_shown(
        domain: SessionService) -> None:
    class BrokenProvider(SimulatorProvider):
        async def create_qris(self, reference: str, amount_rupiah: int,
                              expires_at_ms: int) -> CreatedQris:
            good = await super().create_qris(reference, amount_rupiah, expires_at_ms)
            return CreatedQris(good.trx_id, good.qr_string[:-4] + "0000", 0)

    domain.provider = BrokenProvider(MerchantProfile(), b"k" * 32, domain.clock)
    with pytest.raises(ProviderReturnedInvalidQris):
        await domain.request_qr("alice", "demo", None)
    assert await domain.active_sessions("alice") == []

