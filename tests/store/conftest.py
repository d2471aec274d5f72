"""The stores under test: every part's contract runs on each real backend (`store`), and
what needs two instances on one store runs on two handles (`two_handles`). With the
helpers the contracts share: sessions, notifications and payments as a test writes
them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.model import (
    Notification,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
    StreamTerms,
    current_session,
    decide_payment,
    new_session_id,
)
from gateway.store.base import PaymentSessions, Store
from gateway.store.redis import open_redis
from gateway.store.sqlite import open_sqlite
from tests.conftest import REDIS_URL, redis_keyspace

T0 = 1_800_000_000_000
WINDOW_MS = 1_200_000
ACCESS_MS = 7_200_000
MINUTE_MS = 60_000
TERMS = StreamTerms(ACCESS_MS)  # what a payment buys, unless a test says otherwise


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "redis":
        async with redis_keyspace() as prefix:
            opened = await open_redis(REDIS_URL, prefix)
            yield opened
            await opened.close()
        return
    path = str(tmp_path / "store.db") if request.param == "sqlite-file" else ":memory:"
    opened = await open_sqlite(path)
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite-file", "redis"])
async def two_handles(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[tuple[Store, Store]]:
    """Two handles on one store, as two instances (or processes) would hold it."""
    if request.param == "redis":
        async with redis_keyspace() as prefix:
            handles = (await open_redis(REDIS_URL, prefix), await open_redis(REDIS_URL, prefix))
            yield handles
            for handle in handles:
                await handle.close()
        return
    path = str(tmp_path / "store.db")
    shared = (await open_sqlite(path, shared=True), await open_sqlite(path, shared=True))
    yield shared
    for handle in shared:
        await handle.close()


def pending(user_id: str = "alice", stream_id: str = "demo", *, at_ms: int = T0,
            trx_id: str | None = None, amount: int = 1000) -> PaymentSession:
    session_id = new_session_id()
    return PaymentSession(
        session_id=session_id, user_id=user_id, stream_id=stream_id, provider="simulator",
        trx_id=trx_id or f"TRX{session_id[:10]}", amount=amount, fee=0, qr_string="000201",
        status=SessionStatus.PENDING, created_at_ms=at_ms, paid_at_ms=None,
        expires_at_ms=at_ms + WINDOW_MS,
    )


def paid_note(session: PaymentSession, *, at_ms: int, event_id: str = "evt-1",
              amount: int | None = None, replay_key: str | None = None) -> Notification:
    return Notification(
        provider="simulator", event_id=event_id, trx_id=session.trx_id,
        amount=session.amount if amount is None else amount, reported_status="paid",
        paid_at_ms=at_ms, received_at_ms=at_ms, raw_body='{"x":1}', replay_key=replay_key,
    )


async def pay(sessions: PaymentSessions, session: PaymentSession, *, at_ms: int,
              event_id: str = "evt-1", amount: int | None = None,
              replay_key: str | None = None,
              terms: StreamTerms = TERMS) -> PaymentDecision:
    """A provider's notification that `session` was paid, applied as the service does."""
    return await sessions.apply_notification(
        paid_note(session, at_ms=at_ms, event_id=event_id, amount=amount,
                  replay_key=replay_key),
        lambda context: decide_payment(context, terms))


async def find_active(sessions: PaymentSessions, user_id: str, stream_id: str,
                      now_ms: int) -> PaymentSession | None:
    """The viewer's session for the stream that matters now, as the service finds it."""
    return current_session(await sessions.active_for_stream(user_id, stream_id, now_ms),
                           now_ms)


async def bought(sessions: PaymentSessions, *, at_ms: int = T0, user_id: str = "alice",
                 stream_id: str = "demo", terms: StreamTerms = TERMS) -> PaymentSession:
    """A session paid at `at_ms`, read back as stored."""
    session, inserted = await sessions.insert_pending(
        pending(user_id, stream_id, at_ms=at_ms), at_ms)
    assert inserted
    await pay(sessions, session, at_ms=at_ms, event_id=f"bought-{session.session_id}",
              terms=terms)
    paid = await sessions.get(session.session_id)
    assert paid is not None and paid.status == SessionStatus.PAID
    return paid


async def fill_ledger(sessions: PaymentSessions) -> dict[str, str]:
    """A small ledger: paid on two streams, a wrong amount, a duplicate, an unknown
    transaction; one notification a second. Returns trxIds by viewer."""
    alice = pending("alice", "demo", at_ms=T0)
    await sessions.insert_pending(alice, T0)
    await pay(sessions, alice, at_ms=T0 + 1000, event_id="e1")
    bob = pending("bob", "news", at_ms=T0, amount=5000)
    await sessions.insert_pending(bob, T0)
    await pay(sessions, bob, at_ms=T0 + 2000, event_id="e2", amount=4000)
    await pay(sessions, bob, at_ms=T0 + 3000, event_id="e3")
    await pay(sessions, alice, at_ms=T0 + 4000, event_id="e1")  # the same event again
    await pay(sessions, pending(trx_id="GHOST1"), at_ms=T0 + 5000, event_id="evt-GHOST1")
    return {"alice": alice.trx_id, "bob": bob.trx_id}
