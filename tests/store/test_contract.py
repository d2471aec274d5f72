"""The contract every store backend keeps: run against each real backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.device_model import DeviceGrant
from gateway.model import (
    Notification,
    NotificationReason,
    PaymentSession,
    SessionStatus,
    StreamTerms,
    decide_payment,
    new_session_id,
)
from gateway.store.base import SessionStore
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SQLiteStore
from tests.conftest import REDIS_URL, redis_keyspace

T0 = 1_800_000_000_000
WINDOW_MS = 1_200_000
ACCESS_MS = 7_200_000


@pytest.fixture(params=["sqlite-file", "redis"])
async def two_handles(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[tuple[SessionStore, SessionStore]]:
    """Two handles on one store, as two instances (or processes) would hold it."""
    if request.param == "redis":
        async with redis_keyspace() as prefix:
            handles = (await RedisStore.open(REDIS_URL, prefix),
                       await RedisStore.open(REDIS_URL, prefix))
            yield handles
            for handle in handles:
                await handle.close()
        return
    path = str(tmp_path / "store.db")
    shared = (await SQLiteStore.open(path), await SQLiteStore.open(path))
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


async def pay(store: SessionStore, session: PaymentSession, *, at_ms: int, **kwargs: object):
    return await store.apply_notification(
        paid_note(session, at_ms=at_ms, **kwargs),  # type: ignore[arg-type]
        lambda context: decide_payment(context, StreamTerms(ACCESS_MS)),
    )


async def test_insert_then_read_back_by_id_trx_and_owner(store: SessionStore) -> None:
    session = pending()
    stored, inserted = await store.insert_pending(session, T0)
    assert inserted and stored == session
    assert await store.get(session.session_id) == session
    assert await store.get_by_trx("simulator", session.trx_id) == session
    assert await store.find_active("alice", "demo", T0) == session
    assert await store.list_active("alice", T0) == [session]
    assert await store.get("nope") is None
    assert await store.find_active("bob", "demo", T0) is None


async def test_second_insert_returns_the_existing_active_session(store: SessionStore) -> None:
    first, _ = await store.insert_pending(pending(), T0)
    again, inserted = await store.insert_pending(pending(), T0 + 1000)
    assert not inserted and again == first


async def test_concurrent_inserts_leave_exactly_one_active_session(store: SessionStore) -> None:
    results = await asyncio.gather(*(store.insert_pending(pending(), T0) for _ in range(25)))
    assert sum(inserted for _, inserted in results) == 1
    assert len({session.session_id for session, _ in results}) == 1


async def test_an_expired_session_makes_room_for_a_new_one(store: SessionStore) -> None:
    first, _ = await store.insert_pending(pending(), T0)
    later = T0 + WINDOW_MS
    second, inserted = await store.insert_pending(pending(at_ms=later), later)
    assert inserted and second.session_id != first.session_id
    old = await store.get(first.session_id)
    assert old is not None and old.status == SessionStatus.EXPIRED  # marked in the same txn


async def test_paying_and_its_duplicate(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    decision = await pay(store, session, at_ms=T0 + 5000)
    assert decision.applied and decision.reason == NotificationReason.PAID
    paid = await store.get(session.session_id)
    assert paid is not None and paid.status == SessionStatus.PAID
    assert paid.paid_at_ms == T0 + 5000 and paid.expires_at_ms == T0 + 5000 + ACCESS_MS

    duplicate = await pay(store, session, at_ms=T0 + 6000)  # same eventId
    assert not duplicate.applied and duplicate.reason == NotificationReason.DUPLICATE_EVENT
    retried = await pay(store, session, at_ms=T0 + 7000, event_id="evt-2")
    assert not retried.applied and retried.reason == NotificationReason.ALREADY_PAID
    assert await store.get(session.session_id) == paid
    ledger = await store.notifications(session.trx_id)
    assert [(n.applied, n.reason) for n in ledger] == [
        (False, "already_paid"), (False, "duplicate_event"), (True, "paid")]


async def test_replayed_delivery_changes_nothing(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    await pay(store, session, at_ms=T0, replay_key="t.sig")
    replay = await pay(store, session, at_ms=T0, event_id="evt-9", replay_key="t.sig")
    assert replay.reason == NotificationReason.REPLAYED
    assert len(await store.notifications(session.trx_id)) == 1


async def test_unknown_and_mismatched_notifications_are_kept(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    wrong = await pay(store, session, at_ms=T0, amount=999)
    ghost = await pay(store, replace(session, trx_id="UNKNOWN"), at_ms=T0, event_id="e2")
    assert (wrong.applied, wrong.reason) == (False, NotificationReason.AMOUNT_MISMATCH)
    assert (ghost.applied, ghost.reason) == (False, NotificationReason.UNKNOWN_TRANSACTION)
    stored = await store.get(session.session_id)
    assert stored is not None and stored.status == SessionStatus.PENDING
    assert len(await store.notifications()) == 2


async def test_late_payment_supersedes_a_newer_pending_qr(store: SessionStore) -> None:
    old, _ = await store.insert_pending(pending(), T0)
    later = T0 + WINDOW_MS + 60_000
    newer, _ = await store.insert_pending(pending(at_ms=later), later)
    decision = await pay(store, old, at_ms=later + 1000)
    assert decision.applied and decision.reason == NotificationReason.PAID_AFTER_WINDOW
    paid_old = await store.get(old.session_id)
    superseded = await store.get(newer.session_id)
    assert paid_old is not None and paid_old.status == SessionStatus.PAID
    assert paid_old.expires_at_ms == later + 1000 + ACCESS_MS
    assert superseded is not None and superseded.status == SessionStatus.EXPIRED
    assert await store.find_active("alice", "demo", later + 2000) == paid_old


async def test_late_payment_while_already_holding_access_is_a_refund(store: SessionStore) -> None:
    old, _ = await store.insert_pending(pending(), T0)
    later = T0 + WINDOW_MS + 60_000
    newer, _ = await store.insert_pending(pending(at_ms=later), later)
    await pay(store, newer, at_ms=later + 1000, event_id="pay-newer")
    decision = await pay(store, old, at_ms=later + 2000, event_id="pay-old")
    assert not decision.applied and decision.reason == NotificationReason.DUPLICATE_PAYMENT
    stale = await store.get(old.session_id)
    assert stale is not None and stale.status == SessionStatus.EXPIRED and stale.paid_at_ms is None


async def test_expire_due_marks_in_batches_and_prune_spares_paid(store: SessionStore) -> None:
    sessions = [(await store.insert_pending(pending(f"user{i}"), T0))[0] for i in range(5)]
    await pay(store, sessions[0], at_ms=T0 + 1000)
    after_window = T0 + WINDOW_MS
    first = await store.expire_due(after_window, limit=3)
    second = await store.expire_due(after_window, limit=3)
    assert len(first) == 3 and len(second) == 1  # the paid one is not due yet
    assert all(s.status == SessionStatus.EXPIRED for s in first + second)
    assert await store.expire_due(after_window, limit=3) == []

    after_access = T0 + 1000 + ACCESS_MS
    assert [s.session_id for s in await store.expire_due(after_access, 10)] == [
        sessions[0].session_id]
    assert await store.prune_unpaid(after_access + 1, limit=2) == 2
    assert await store.prune_unpaid(after_access + 1, limit=2) == 2
    assert await store.prune_unpaid(after_access + 1, limit=2) == 0
    ledger = await store.get(sessions[0].session_id)  # paid: kept as the sales ledger
    assert ledger is not None and ledger.paid_at_ms == T0 + 1000


async def test_list_active_is_per_user_and_skips_expired(store: SessionStore) -> None:
    a, _ = await store.insert_pending(pending("alice", "demo"), T0)
    b, _ = await store.insert_pending(pending("alice", "other", at_ms=T0 + 1), T0 + 1)
    await store.insert_pending(pending("bob", "demo"), T0)
    assert await store.list_active("alice", T0 + 2) == [a, b]
    assert await store.list_active("alice", T0 + WINDOW_MS + 1) == []


async def test_ending_a_paid_session_early(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    await pay(store, session, at_ms=T0 + 1000)
    assert await store.end_paid_session(session.session_id, T0 + 5000) is not None
    ended = await store.get(session.session_id)
    assert ended is not None and ended.status == SessionStatus.EXPIRED
    assert ended.expires_at_ms == T0 + 5000 and ended.paid_at_ms == T0 + 1000
    # The tokens handed out carry the end of the paid window, which an early end keeps.
    assert ended.paid_until_ms == T0 + 1000 + ACCESS_MS
    assert await store.end_paid_session(session.session_id, T0 + 6000) is None  # once
    # Listed while its tokens could still look valid, and no longer once they expire.
    assert [s.session_id for s in await store.ended_early(T0 + 6000)] == [session.session_id]
    assert [s.session_id for s in await store.ended_early(T0 + 1000 + ACCESS_MS - 1)] == [
        session.session_id]
    assert await store.ended_early(T0 + 1000 + ACCESS_MS) == []
    assert await store.find_active("alice", "demo", T0 + 6000) is None
    again, inserted = await store.insert_pending(pending(at_ms=T0 + 7000), T0 + 7000)
    assert inserted and again.session_id != session.session_id


async def test_only_a_paid_active_session_can_be_ended(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    assert await store.end_paid_session(session.session_id, T0 + 1) is None
    assert await store.end_paid_session("no-such-session", T0 + 1) is None
    unchanged = await store.get(session.session_id)
    assert unchanged == session


async def test_the_ledger_keeps_every_notification_newest_first(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    await pay(store, session, at_ms=T0 + 1000, event_id="e1", amount=1)
    await pay(store, session, at_ms=T0 + 2000, event_id="e2")
    await store.apply_notification(
        replace(paid_note(session, at_ms=T0 + 3000, event_id="e3"), trx_id="UNKNOWN"),
        lambda context: decide_payment(context, StreamTerms(ACCESS_MS)))
    ledger = await store.notifications()
    assert [(n.notification.event_id, n.applied, n.reason) for n in ledger] == [
        ("e3", False, "unknown_transaction"), ("e2", True, "paid"),
        ("e1", False, "amount_mismatch")]
    assert ledger[1].session_id == session.session_id and ledger[0].session_id is None
    assert ledger[1].notification == paid_note(session, at_ms=T0 + 2000, event_id="e2")
    mine = await store.notifications(trx_id=session.trx_id, limit=1)
    assert [n.notification.event_id for n in mine] == ["e2"]


async def test_two_handles_on_one_store_race_for_one_viewer(
        two_handles: tuple[SessionStore, SessionStore]) -> None:
    """Two instances (or processes) sharing the store: still one active session."""
    store, other = two_handles
    results = await asyncio.gather(*(
        handle.insert_pending(pending(), T0) for handle in [store, other] * 10))
    assert sum(inserted for _, inserted in results) == 1
    winner = next(session for session, inserted in results if inserted)
    decisions = await asyncio.gather(
        pay(store, winner, at_ms=T0 + 1000, event_id="same-event"),
        pay(other, winner, at_ms=T0 + 1000, event_id="same-event"))
    assert sorted(d.reason for d in decisions) == ["duplicate_event", "paid"]
    assert len(await other.notifications()) == 2  # both kept, one applied


async def test_two_sweepers_expire_each_session_once(
        two_handles: tuple[SessionStore, SessionStore]) -> None:
    """Every instance runs the sweeper: a session expired by one is not reported (and
    pushed to viewers) again by another, and nothing due is left for the next round."""
    store, other = two_handles
    due = [(await store.insert_pending(pending(f"user{i}"), T0))[0] for i in range(30)]
    after_window = T0 + WINDOW_MS
    batches = await asyncio.gather(*(handle.expire_due(after_window, limit=7)
                                     for handle in [store, other] * 5))
    expired = [session.session_id for batch in batches for session in batch]
    assert sorted(expired) == sorted(session.session_id for session in due)


async def test_get_many_returns_those_that_exist(store: SessionStore) -> None:
    sessions = [(await store.insert_pending(pending(f"user{i}"), T0))[0] for i in range(3)]
    found = await store.get_many([sessions[2].session_id, "nope", sessions[0].session_id])
    assert sorted(found, key=lambda s: s.user_id) == [sessions[0], sessions[2]]
    assert await store.get_many([]) == []


async def test_the_ledger_keeps_the_fee_a_payer_paid_on_top(store: SessionStore) -> None:
    session, _ = await store.insert_pending(pending(), T0)
    note = replace(paid_note(session, at_ms=T0 + 1000), fee=71)
    await store.apply_notification(
        note, lambda context: decide_payment(context, StreamTerms(ACCESS_MS)))
    [entry] = await store.notifications(session.trx_id)
    assert entry.notification == note and entry.notification.fee == 71


async def test_unpaid_sessions_by_creation_for_reconciliation(store: SessionStore) -> None:
    old, _ = await store.insert_pending(pending("a", at_ms=T0), T0)
    young, _ = await store.insert_pending(pending("b", at_ms=T0 + 50_000), T0 + 50_000)
    paid, _ = await store.insert_pending(pending("c", at_ms=T0 + 10_000), T0 + 10_000)
    await pay(store, paid, at_ms=T0 + 20_000)
    now = T0 + WINDOW_MS + 1  # `old` is past its window: still worth asking about
    await store.expire_due(now, 100)
    found = await store.unpaid_created_between(T0 - 1, T0 + 60_000, 10)
    assert [s.session_id for s in found] == [old.session_id, young.session_id]
    assert found[0].status == SessionStatus.EXPIRED
    assert [s.session_id for s in await store.unpaid_created_between(T0, T0 + 60_000, 10)
            ] == [young.session_id]  # the lower bound is exclusive
    assert [s.session_id for s in await store.unpaid_created_between(T0 - 1, T0 + 60_000, 1)
            ] == [old.session_id]
    assert await store.unpaid_created_between(T0 - 1, T0 + 49_999, 10) == [found[0]]


async def test_payments_listed_newest_first_by_status_and_stream(store: SessionStore) -> None:
    first, _ = await store.insert_pending(pending("a", "demo", at_ms=T0), T0)
    second, _ = await store.insert_pending(pending("b", "other", at_ms=T0 + 1), T0 + 1)
    third, _ = await store.insert_pending(pending("c", "demo", at_ms=T0 + 2), T0 + 2)
    await pay(store, third, at_ms=T0 + 3)
    ids = [s.session_id for s in await store.payments(None, None, 10)]
    assert ids == [third.session_id, second.session_id, first.session_id]
    assert [s.session_id for s in await store.payments(SessionStatus.PAID, None, 10)] == [
        third.session_id]
    assert [s.session_id for s in await store.payments(None, "demo", 10)] == [
        third.session_id, first.session_id]
    assert [s.session_id for s in await store.payments(SessionStatus.PENDING, "demo", 10)
            ] == [first.session_id]
    assert len(await store.payments(None, None, 2)) == 2


# --- playback grants and device places (SPEC, Devices) ----------------------------

PLAY_WINDOW_MS = 30_000


async def grant_for(store: SessionStore, session_id: str, device: str, at_ms: int,
                    grant_id: str) -> DeviceGrant:
    grant, places = await store.grant_for_device(session_id, device, at_ms, grant_id,
                                                 at_ms - PLAY_WINDOW_MS)
    # What comes with the grant is what `playing` says, from the same trip.
    assert places == await store.playing(session_id, at_ms - PLAY_WINDOW_MS)
    return grant


async def test_a_device_keeps_its_grant_and_each_device_gets_its_own(
        store: SessionStore) -> None:
    first = await grant_for(store, "sess-a", "browser:1", T0, "grant-1")
    again = await grant_for(store, "sess-a", "browser:1", T0 + 5000, "grant-2")
    other = await grant_for(store, "sess-a", "device:tv", T0 + 6000, "grant-3")
    elsewhere = await grant_for(store, "sess-b", "browser:1", T0 + 7000, "grant-4")
    assert again == first and first.grant_id == "grant-1" and first.created_at_ms == T0
    assert first.ended_at_ms is None and first.device_id is None
    assert other.grant_id == "grant-3" and other.device_id == "tv"
    assert elsewhere.grant_id == "grant-4"
    assert await store.get_grant("grant-3") == other
    assert await store.get_grant("grant-2") is None
    assert [grant.grant_id for grant in await store.grants("sess-a")] == ["grant-1", "grant-3"]


async def test_concurrent_asks_from_one_device_make_one_grant(store: SessionStore) -> None:
    made = await asyncio.gather(*(grant_for(store, "sess-a", "browser:1", T0,
                                                   f"grant-{n}") for n in range(20)))
    assert len({grant.grant_id for grant in made}) == 1
    assert len(await store.grants("sess-a")) == 1


async def test_places_up_to_the_limit_then_full(store: SessionStore) -> None:
    a = await grant_for(store, "sess-a", "browser:1", T0, "grant-a")
    b = await grant_for(store, "sess-a", "browser:2", T0, "grant-b")
    since = T0 - PLAY_WINDOW_MS

    async def claim(grant_id: str, address: str, at_ms: int = T0) -> str:
        return await store.claim_place("sess-a", grant_id, address, at_ms,
                                       at_ms - PLAY_WINDOW_MS, 2)

    assert await claim(a.grant_id, "10.0.0.1") == "admitted"
    assert await claim(b.grant_id, "10.0.0.2", T0 + 1000) == "admitted"
    # The same grant from a third address is a third place: a shared link counts per place.
    assert await claim(a.grant_id, "10.0.0.3", T0 + 2000) == "full"
    assert await claim(a.grant_id, "10.0.0.1", T0 + 3000) == "admitted"  # renewing is not new
    places = await store.playing("sess-a", since)
    assert [(p.grant_id, p.address, p.first_seen_ms, p.last_seen_ms) for p in places] == [
        ("grant-a", "10.0.0.1", T0, T0 + 3000), ("grant-b", "10.0.0.2", T0 + 1000, T0 + 1000)]
    # b stops; 30 s after its last report its place is free, a's is still held.
    later = T0 + 1000 + PLAY_WINDOW_MS
    assert await claim(a.grant_id, "10.0.0.3", later) == "admitted"
    assert {p.address for p in await store.playing("sess-a", later - PLAY_WINDOW_MS)} == {
        "10.0.0.1", "10.0.0.3"}


async def test_no_limit_means_every_place_is_admitted(store: SessionStore) -> None:
    grant = await grant_for(store, "sess-a", "browser:1", T0, "grant-a")
    for n in range(5):
        assert await store.claim_place("sess-a", grant.grant_id, f"10.0.0.{n}", T0,
                                       T0 - PLAY_WINDOW_MS, 0) == "admitted"
    assert len(await store.playing("sess-a", T0 - PLAY_WINDOW_MS)) == 5


async def test_ending_a_grant_frees_its_places_and_the_device_gets_a_new_one(
        store: SessionStore) -> None:
    a = await grant_for(store, "sess-a", "browser:1", T0, "grant-a")
    b = await grant_for(store, "sess-a", "browser:2", T0, "grant-b")
    for grant, address in ((a, "10.0.0.1"), (a, "10.0.0.9"), (b, "10.0.0.2")):
        await store.claim_place("sess-a", grant.grant_id, address, T0, T0 - PLAY_WINDOW_MS, 3)
    ended = await store.end_grant("grant-a", T0 + 500)
    assert ended is not None and ended.ended_at_ms == T0 + 500
    assert await store.end_grant("grant-a", T0 + 900) == ended  # idempotent
    assert await store.end_grant("no-such-grant", T0) is None
    assert [p.grant_id for p in await store.playing("sess-a", T0 - PLAY_WINDOW_MS)] == [
        "grant-b"]
    assert await store.claim_place("sess-a", "grant-a", "10.0.0.1", T0 + 1000,
                                   T0 - PLAY_WINDOW_MS, 3) == "ended"
    fresh = await grant_for(store, "sess-a", "browser:1", T0 + 1000, "grant-c")
    assert fresh.grant_id == "grant-c"
    assert [(g.grant_id, g.ended_at_ms) for g in await store.grants("sess-a")] == [
        ("grant-a", T0 + 500), ("grant-b", None), ("grant-c", None)]


async def test_a_grant_claims_places_only_for_its_own_purchase(store: SessionStore) -> None:
    await grant_for(store, "sess-a", "browser:1", T0, "grant-a")
    assert await store.claim_place("sess-b", "grant-a", "10.0.0.1", T0,
                                   T0 - PLAY_WINDOW_MS, 2) == "ended"
    assert await store.claim_place("sess-a", "unknown", "10.0.0.1", T0,
                                   T0 - PLAY_WINDOW_MS, 2) == "ended"
    assert await store.playing("sess-b", T0 - PLAY_WINDOW_MS) == []


async def test_two_instances_share_one_count_of_places(
        two_handles: tuple[SessionStore, SessionStore]) -> None:
    first, second = two_handles
    grants = [await grant_for(first, "sess-a", f"browser:{n}", T0, f"grant-{n}")
              for n in range(3)]
    assert await grant_for(second, "sess-a", "browser:1", T0, "x") == grants[1]

    async def claim(handle: SessionStore, n: int, address: str) -> str:
        return await handle.claim_place("sess-a", grants[n].grant_id, address, T0,
                                        T0 - PLAY_WINDOW_MS, 2)

    results = await asyncio.gather(claim(first, 0, "10.0.0.1"), claim(second, 1, "10.0.0.2"),
                                   claim(second, 2, "10.0.0.3"), claim(first, 0, "10.0.0.4"))
    assert sorted(results).count("admitted") == 2
    assert len(await first.playing("sess-a", T0 - PLAY_WINDOW_MS)) == 2


# --- Tickets ahead and renewals (rule 2's exception) ---------------------------------

MINUTE_MS = 60_000


async def bought(store: SessionStore, *, at_ms: int = T0, user_id: str = "alice",
                 terms: StreamTerms | None = None) -> PaymentSession:
    """A session paid at `at_ms`, read back as stored."""
    session, inserted = await store.insert_pending(pending(user_id, at_ms=at_ms), at_ms)
    assert inserted
    await store.apply_notification(paid_note(session, at_ms=at_ms, event_id="bought"),
                                   lambda context: decide_payment(
                                       context, terms or StreamTerms(ACCESS_MS)))
    paid = await store.get(session.session_id)
    assert paid is not None and paid.status == SessionStatus.PAID
    return paid


async def test_the_next_window_is_sold_in_the_last_ten_minutes_and_starts_at_the_end(
        store: SessionStore) -> None:
    current = await bought(store)
    assert current.starts_at_ms == T0 and current.expires_at_ms == T0 + ACCESS_MS
    too_early = current.expires_at_ms - 11 * MINUTE_MS
    refused, inserted = await store.insert_pending(pending(at_ms=too_early), too_early)
    assert (refused, inserted) == (current, False)

    now = current.expires_at_ms - 8 * MINUTE_MS
    renewal, inserted = await store.insert_pending(pending(at_ms=now), now)
    assert inserted and renewal.renews == current.session_id
    assert await store.active_for_stream("alice", "demo", now) == [current, renewal]
    assert await store.find_active("alice", "demo", now) == current  # it grants access
    again, inserted = await store.insert_pending(pending(at_ms=now + 1), now + 1)
    assert (again, inserted) == (renewal, False)  # the same QR, not a second one

    decision = await pay(store, renewal, at_ms=now + 2000)
    assert decision.applied and decision.reason == "paid"
    paid = await store.get(renewal.session_id)
    assert paid is not None
    assert paid.starts_at_ms == current.expires_at_ms  # no gap, no overlap
    assert paid.expires_at_ms == current.expires_at_ms + ACCESS_MS
    assert await store.find_active("alice", "demo", now + 3000) == current
    more, inserted = await store.insert_pending(pending(at_ms=now + 4000), now + 4000)
    assert (more, inserted) == (current, False)  # one window ahead at most

    after = current.expires_at_ms
    assert await store.find_active("alice", "demo", after) == paid
    assert paid.grants_access("alice", "demo", after)
    assert [s.session_id for s in await store.list_paid("alice", 10)] == [
        renewal.session_id, current.session_id]


async def test_a_renewal_left_unpaid_hands_the_slot_back(store: SessionStore) -> None:
    current = await bought(store)
    now = current.expires_at_ms - 9 * MINUTE_MS
    short = replace(pending(at_ms=now), expires_at_ms=now + MINUTE_MS)  # a short QR
    renewal, inserted = await store.insert_pending(short, now)
    assert inserted
    expired = await store.expire_due(now + MINUTE_MS, 100)
    assert [s.session_id for s in expired] == [renewal.session_id]
    later = now + 2 * MINUTE_MS
    assert await store.find_active("alice", "demo", later) == current
    second, inserted = await store.insert_pending(pending(at_ms=later), later)
    assert inserted and second.renews == current.session_id


async def test_a_renewal_paid_after_the_window_it_continued_starts_at_payment(
        store: SessionStore) -> None:
    current = await bought(store)
    now = current.expires_at_ms - 5 * MINUTE_MS
    renewal, _ = await store.insert_pending(pending(at_ms=now), now)
    late = current.expires_at_ms + MINUTE_MS
    decision = await pay(store, renewal, at_ms=late)
    assert decision.applied
    paid = await store.get(renewal.session_id)
    assert paid is not None and (paid.starts_at_ms, paid.renews) == (late, None)


async def test_racing_renewals_make_one_qr(two_handles: tuple[SessionStore, SessionStore]
                                           ) -> None:
    store, other = two_handles
    current = await bought(store)
    now = current.expires_at_ms - 5 * MINUTE_MS
    results = await asyncio.gather(*(
        handle.insert_pending(pending(at_ms=now), now) for handle in [store, other] * 10))
    assert sum(inserted for _, inserted in results) == 1
    renewal = next(session for session, inserted in results if inserted)
    assert all(session == renewal for session, _ in results)
    assert renewal.renews == current.session_id


async def test_a_ticket_bought_ahead_opens_at_the_start(store: SessionStore) -> None:
    start = T0 + 3600 * 1000
    ticket = await bought(store, terms=StreamTerms(ACCESS_MS, opens_at_ms=start))
    assert (ticket.paid_at_ms, ticket.starts_at_ms, ticket.expires_at_ms) == (
        T0, start, start + ACCESS_MS)
    assert await store.find_active("alice", "demo", T0 + 1000) == ticket
    assert ticket.waiting_at(T0 + 1000) and not ticket.grants_access("alice", "demo", T0 + 1)
    assert ticket.grants_access("alice", "demo", start)
    # Waiting is holding: no second ticket, and no early renewal either.
    again, inserted = await store.insert_pending(pending(at_ms=T0 + 2000), T0 + 2000)
    assert (again, inserted) == (ticket, False)
    # Revoked before it opened: the gate must still learn of it at start-up, until the
    # end of the window it was paid for (the show's start plus the access window).
    ended = await store.end_paid_session(ticket.session_id, T0 + 3000)
    assert ended is not None and ended.paid_until_ms == start + ACCESS_MS
    assert [s.session_id for s in await store.ended_early(start + ACCESS_MS - 1)] == [
        ticket.session_id]
    assert await store.ended_early(start + ACCESS_MS) == []
