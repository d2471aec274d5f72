"""The contract of the store's payment sessions (`PaymentSessions`), on every backend:
rule 1 held atomically, notifications applied once with their ledger entry, expiry and
pruning, early ends, renewals, and the listings the service and the console read."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from gateway.model import NotificationReason, SessionStatus, StreamTerms
from gateway.store.base import Store
from tests.store.conftest import (
    ACCESS_MS,
    MINUTE_MS,
    T0,
    WINDOW_MS,
    bought,
    find_active,
    pay,
    pending,
)


async def test_insert_then_read_back_by_id_trx_and_owner(store: Store) -> None:
    sessions = store.sessions
    session = pending()
    stored, inserted = await sessions.insert_pending(session, T0)
    assert inserted and stored == session
    assert await sessions.get(session.session_id) == session
    assert await sessions.get_by_trx("simulator", session.trx_id) == session
    assert await sessions.active_for_stream("alice", "demo", T0) == [session]
    assert await sessions.list_active("alice", T0) == [session]
    assert await sessions.get("nope") is None
    assert await sessions.active_for_stream("bob", "demo", T0) == []


async def test_second_insert_returns_the_existing_active_session(store: Store) -> None:
    first, _ = await store.sessions.insert_pending(pending(), T0)
    again, inserted = await store.sessions.insert_pending(pending(), T0 + 1000)
    assert not inserted and again == first


async def test_concurrent_inserts_leave_exactly_one_active_session(store: Store) -> None:
    results = await asyncio.gather(*(store.sessions.insert_pending(pending(), T0)
                                     for _ in range(25)))
    assert sum(inserted for _, inserted in results) == 1
    assert len({session.session_id for session, _ in results}) == 1


async def test_an_expired_session_makes_room_for_a_new_one(store: Store) -> None:
    first, _ = await store.sessions.insert_pending(pending(), T0)
    later = T0 + WINDOW_MS
    second, inserted = await store.sessions.insert_pending(pending(at_ms=later), later)
    assert inserted and second.session_id != first.session_id
    old = await store.sessions.get(first.session_id)
    assert old is not None and old.status == SessionStatus.EXPIRED  # marked in the same txn


async def test_paying_and_its_duplicate_with_their_ledger_entries(store: Store) -> None:
    sessions = store.sessions
    session, _ = await sessions.insert_pending(pending(), T0)
    decision = await pay(sessions, session, at_ms=T0 + 5000)
    assert decision.applied and decision.reason == NotificationReason.PAID
    paid = await sessions.get(session.session_id)
    assert paid is not None and paid.status == SessionStatus.PAID
    assert paid.paid_at_ms == T0 + 5000 and paid.expires_at_ms == T0 + 5000 + ACCESS_MS

    duplicate = await pay(sessions, session, at_ms=T0 + 6000)  # same eventId
    assert not duplicate.applied and duplicate.reason == NotificationReason.DUPLICATE_EVENT
    retried = await pay(sessions, session, at_ms=T0 + 7000, event_id="evt-2")
    assert not retried.applied and retried.reason == NotificationReason.ALREADY_PAID
    assert await sessions.get(session.session_id) == paid
    # Each in the ledger, written in the same transaction as what it did.
    ledger = await store.ledger.notifications(session.trx_id)
    assert [(n.applied, n.reason) for n in ledger] == [
        (False, "already_paid"), (False, "duplicate_event"), (True, "paid")]


async def test_replayed_delivery_changes_nothing(store: Store) -> None:
    session, _ = await store.sessions.insert_pending(pending(), T0)
    await pay(store.sessions, session, at_ms=T0, replay_key="t.sig")
    replay = await pay(store.sessions, session, at_ms=T0, event_id="evt-9", replay_key="t.sig")
    assert replay.reason == NotificationReason.REPLAYED
    assert len(await store.ledger.notifications(session.trx_id)) == 1


async def test_unknown_and_mismatched_notifications_are_kept(store: Store) -> None:
    session, _ = await store.sessions.insert_pending(pending(), T0)
    wrong = await pay(store.sessions, session, at_ms=T0, amount=999)
    ghost = await pay(store.sessions, replace(session, trx_id="UNKNOWN"), at_ms=T0,
                      event_id="e2")
    assert (wrong.applied, wrong.reason) == (False, NotificationReason.AMOUNT_MISMATCH)
    assert (ghost.applied, ghost.reason) == (False, NotificationReason.UNKNOWN_TRANSACTION)
    stored = await store.sessions.get(session.session_id)
    assert stored is not None and stored.status == SessionStatus.PENDING
    assert len(await store.ledger.notifications()) == 2


async def test_late_payment_supersedes_a_newer_pending_qr(store: Store) -> None:
    sessions = store.sessions
    old, _ = await sessions.insert_pending(pending(), T0)
    later = T0 + WINDOW_MS + 60_000
    newer, _ = await sessions.insert_pending(pending(at_ms=later), later)
    decision = await pay(sessions, old, at_ms=later + 1000)
    assert decision.applied and decision.reason == NotificationReason.PAID_AFTER_WINDOW
    paid_old = await sessions.get(old.session_id)
    superseded = await sessions.get(newer.session_id)
    assert paid_old is not None and paid_old.status == SessionStatus.PAID
    assert paid_old.expires_at_ms == later + 1000 + ACCESS_MS
    assert superseded is not None and superseded.status == SessionStatus.EXPIRED
    assert await find_active(sessions, "alice", "demo", later + 2000) == paid_old


async def test_late_payment_while_already_holding_access_is_a_refund(store: Store) -> None:
    sessions = store.sessions
    old, _ = await sessions.insert_pending(pending(), T0)
    later = T0 + WINDOW_MS + 60_000
    newer, _ = await sessions.insert_pending(pending(at_ms=later), later)
    await pay(sessions, newer, at_ms=later + 1000, event_id="pay-newer")
    decision = await pay(sessions, old, at_ms=later + 2000, event_id="pay-old")
    assert not decision.applied and decision.reason == NotificationReason.DUPLICATE_PAYMENT
    stale = await sessions.get(old.session_id)
    assert stale is not None and stale.status == SessionStatus.EXPIRED and stale.paid_at_ms is None


async def test_expire_due_marks_in_batches_and_prune_spares_paid(store: Store) -> None:
    sessions = store.sessions
    made = [(await sessions.insert_pending(pending(f"user{i}"), T0))[0] for i in range(5)]
    await pay(sessions, made[0], at_ms=T0 + 1000)
    after_window = T0 + WINDOW_MS
    first = await sessions.expire_due(after_window, limit=3)
    second = await sessions.expire_due(after_window, limit=3)
    assert len(first) == 3 and len(second) == 1  # the paid one is not due yet
    assert all(s.status == SessionStatus.EXPIRED for s in first + second)
    assert await sessions.expire_due(after_window, limit=3) == []

    after_access = T0 + 1000 + ACCESS_MS
    assert [s.session_id for s in await sessions.expire_due(after_access, 10)] == [
        made[0].session_id]
    assert await sessions.prune_unpaid(after_access + 1, limit=2) == 2
    assert await sessions.prune_unpaid(after_access + 1, limit=2) == 2
    assert await sessions.prune_unpaid(after_access + 1, limit=2) == 0
    ledger = await sessions.get(made[0].session_id)  # paid: kept as the sales ledger
    assert ledger is not None and ledger.paid_at_ms == T0 + 1000


async def test_list_active_is_per_user_and_skips_expired(store: Store) -> None:
    sessions = store.sessions
    a, _ = await sessions.insert_pending(pending("alice", "demo"), T0)
    b, _ = await sessions.insert_pending(pending("alice", "other", at_ms=T0 + 1), T0 + 1)
    await sessions.insert_pending(pending("bob", "demo"), T0)
    assert await sessions.list_active("alice", T0 + 2) == [a, b]
    assert await sessions.list_active("alice", T0 + WINDOW_MS + 1) == []


async def test_ending_a_paid_session_early(store: Store) -> None:
    sessions = store.sessions
    session, _ = await sessions.insert_pending(pending(), T0)
    await pay(sessions, session, at_ms=T0 + 1000)
    assert await sessions.end_paid_session(session.session_id, T0 + 5000) is not None
    ended = await sessions.get(session.session_id)
    assert ended is not None and ended.status == SessionStatus.EXPIRED
    assert ended.expires_at_ms == T0 + 5000 and ended.paid_at_ms == T0 + 1000
    # The tokens handed out carry the end of the paid window, which an early end keeps.
    assert ended.paid_until_ms == T0 + 1000 + ACCESS_MS
    assert await sessions.end_paid_session(session.session_id, T0 + 6000) is None  # once
    # Listed while its tokens could still look valid, and no longer once they expire.
    assert [s.session_id for s in await sessions.ended_early(T0 + 6000)] == [
        session.session_id]
    assert [s.session_id for s in await sessions.ended_early(T0 + 1000 + ACCESS_MS - 1)] == [
        session.session_id]
    assert await sessions.ended_early(T0 + 1000 + ACCESS_MS) == []
    assert await find_active(sessions, "alice", "demo", T0 + 6000) is None
    again, inserted = await sessions.insert_pending(pending(at_ms=T0 + 7000), T0 + 7000)
    assert inserted and again.session_id != session.session_id


async def test_only_a_paid_active_session_can_be_ended(store: Store) -> None:
    session, _ = await store.sessions.insert_pending(pending(), T0)
    assert await store.sessions.end_paid_session(session.session_id, T0 + 1) is None
    assert await store.sessions.end_paid_session("no-such-session", T0 + 1) is None
    assert await store.sessions.get(session.session_id) == session


async def test_two_handles_on_one_store_race_for_one_viewer(
        two_handles: tuple[Store, Store]) -> None:
    """Two instances (or processes) sharing the store: still one active session."""
    store, other = two_handles
    results = await asyncio.gather(*(
        handle.sessions.insert_pending(pending(), T0) for handle in [store, other] * 10))
    assert sum(inserted for _, inserted in results) == 1
    winner = next(session for session, inserted in results if inserted)
    decisions = await asyncio.gather(
        pay(store.sessions, winner, at_ms=T0 + 1000, event_id="same-event"),
        pay(other.sessions, winner, at_ms=T0 + 1000, event_id="same-event"))
    assert sorted(d.reason for d in decisions) == ["duplicate_event", "paid"]
    assert len(await other.ledger.notifications()) == 2  # both kept, one applied


async def test_a_burst_of_payments_wider_than_the_connection_pool_all_apply(
        store: Store) -> None:
    """More payments at once than the store has connections (a show's start): each is
    applied, none waits out the deadline for a connection its own reads need."""
    sessions = [(await store.sessions.insert_pending(pending(f"user{i}"), T0))[0]
                for i in range(200)]
    decisions = await asyncio.gather(*(pay(store.sessions, session, at_ms=T0 + 1000,
                                           event_id=f"evt-{session.session_id}")
                                       for session in sessions))
    assert [decision.reason for decision in decisions] == ["paid"] * 200


async def test_two_sweepers_expire_each_session_once(two_handles: tuple[Store, Store]) -> None:
    """Every instance runs the sweeper: a session expired by one is not reported (and
    pushed to viewers) again by another, and nothing due is left for the next round."""
    store, other = two_handles
    due = [(await store.sessions.insert_pending(pending(f"user{i}"), T0))[0]
           for i in range(30)]
    after_window = T0 + WINDOW_MS
    batches = await asyncio.gather(*(handle.sessions.expire_due(after_window, limit=7)
                                     for handle in [store, other] * 5))
    expired = [session.session_id for batch in batches for session in batch]
    assert sorted(expired) == sorted(session.session_id for session in due)


async def test_get_many_returns_those_that_exist(store: Store) -> None:
    made = [(await store.sessions.insert_pending(pending(f"user{i}"), T0))[0] for i in range(3)]
    found = await store.sessions.get_many([made[2].session_id, "nope", made[0].session_id])
    assert sorted(found, key=lambda s: s.user_id) == [made[0], made[2]]
    assert await store.sessions.get_many([]) == []


async def test_unpaid_sessions_by_creation_for_reconciliation(store: Store) -> None:
    sessions = store.sessions
    old, _ = await sessions.insert_pending(pending("a", at_ms=T0), T0)
    young, _ = await sessions.insert_pending(pending("b", at_ms=T0 + 50_000), T0 + 50_000)
    paid, _ = await sessions.insert_pending(pending("c", at_ms=T0 + 10_000), T0 + 10_000)
    await pay(sessions, paid, at_ms=T0 + 20_000)
    now = T0 + WINDOW_MS + 1  # `old` is past its window: still worth asking about
    await sessions.expire_due(now, 100)
    found = await sessions.unpaid_created_between(T0 - 1, T0 + 60_000, 10)
    assert [s.session_id for s in found] == [old.session_id, young.session_id]
    assert found[0].status == SessionStatus.EXPIRED
    assert [s.session_id for s in await sessions.unpaid_created_between(T0, T0 + 60_000, 10)
            ] == [young.session_id]  # the lower bound is exclusive
    assert [s.session_id for s in await sessions.unpaid_created_between(T0 - 1, T0 + 60_000, 1)
            ] == [old.session_id]
    assert await sessions.unpaid_created_between(T0 - 1, T0 + 49_999, 10) == [found[0]]


async def test_payments_listed_newest_first_by_status_and_stream(store: Store) -> None:
    sessions = store.sessions
    first, _ = await sessions.insert_pending(pending("a", "demo", at_ms=T0), T0)
    second, _ = await sessions.insert_pending(pending("b", "other", at_ms=T0 + 1), T0 + 1)
    third, _ = await sessions.insert_pending(pending("c", "demo", at_ms=T0 + 2), T0 + 2)
    await pay(sessions, third, at_ms=T0 + 3)
    ids = [s.session_id for s in await sessions.payments(None, None, 10)]
    assert ids == [third.session_id, second.session_id, first.session_id]
    assert [s.session_id for s in await sessions.payments(SessionStatus.PAID, None, 10)] == [
        third.session_id]
    assert [s.session_id for s in await sessions.payments(None, "demo", 10)] == [
        third.session_id, first.session_id]
    assert [s.session_id for s in await sessions.payments(SessionStatus.PENDING, "demo", 10)
            ] == [first.session_id]
    assert len(await sessions.payments(None, None, 2)) == 2


async def test_sessions_of_a_user_of_any_status_newest_first(store: Store) -> None:
    sessions = store.sessions
    old = pending("alice", "demo", at_ms=T0)
    await sessions.insert_pending(old, T0)
    later = T0 + 1_300_000  # after the first QR's payment window
    new = pending("alice", "demo", at_ms=later)
    await sessions.insert_pending(new, later)
    other = pending("alice", "news", at_ms=later + 1)
    await sessions.insert_pending(other, later + 1)
    await sessions.insert_pending(pending("bob", "demo", at_ms=later), later)
    found = await sessions.sessions_of_user("alice", 10)
    assert [session.session_id for session in found] == [
        other.session_id, new.session_id, old.session_id]
    assert found[2].status == SessionStatus.EXPIRED
    assert [session.session_id for session in await sessions.sessions_of_user("alice", 1)] == [
        other.session_id]
    assert await sessions.sessions_of_user("nobody", 10) == []


async def test_paid_now_lists_open_access_per_stream(store: Store) -> None:
    sessions = store.sessions
    made = [pending(user, stream, at_ms=T0)
            for user, stream in (("a", "demo"), ("b", "demo"), ("c", "news"), ("d", "demo"))]
    for index, session in enumerate(made[:3]):
        await sessions.insert_pending(session, T0)
        await pay(sessions, session, at_ms=T0 + 1000, event_id=f"e{index}")
    await sessions.insert_pending(made[3], T0)  # pending: nobody holds access

    async def paid_now(now_ms: int) -> dict[str, set[str]]:
        return {stream: set(ids) for stream, ids in (await sessions.paid_now(now_ms)).items()}

    assert await paid_now(T0 + 2000) == {"demo": {made[0].session_id, made[1].session_id},
                                         "news": {made[2].session_id}}
    await sessions.end_paid_session(made[0].session_id, T0 + 3000)
    assert await paid_now(T0 + 3000) == {"demo": {made[1].session_id},
                                         "news": {made[2].session_id}}
    assert await paid_now(T0 + 1000 + ACCESS_MS) == {}


# --- Tickets ahead and renewals (rule 2's exception) ---------------------------------

async def test_the_next_window_is_sold_in_the_last_ten_minutes_and_starts_at_the_end(
        store: Store) -> None:
    sessions = store.sessions
    current = await bought(sessions)
    assert current.starts_at_ms == T0 and current.expires_at_ms == T0 + ACCESS_MS
    too_early = current.expires_at_ms - 11 * MINUTE_MS
    refused, inserted = await sessions.insert_pending(pending(at_ms=too_early), too_early)
    assert (refused, inserted) == (current, False)

    now = current.expires_at_ms - 8 * MINUTE_MS
    renewal, inserted = await sessions.insert_pending(pending(at_ms=now), now)
    assert inserted and renewal.renews == current.session_id
    assert await sessions.active_for_stream("alice", "demo", now) == [current, renewal]
    assert await find_active(sessions, "alice", "demo", now) == current  # it grants access
    again, inserted = await sessions.insert_pending(pending(at_ms=now + 1), now + 1)
    assert (again, inserted) == (renewal, False)  # the same QR, not a second one

    decision = await pay(sessions, renewal, at_ms=now + 2000)
    assert decision.applied and decision.reason == "paid"
    paid = await sessions.get(renewal.session_id)
    assert paid is not None
    assert paid.starts_at_ms == current.expires_at_ms  # no gap, no overlap
    assert paid.expires_at_ms == current.expires_at_ms + ACCESS_MS
    assert await find_active(sessions, "alice", "demo", now + 3000) == current
    more, inserted = await sessions.insert_pending(pending(at_ms=now + 4000), now + 4000)
    assert (more, inserted) == (current, False)  # one window ahead at most

    after = current.expires_at_ms
    assert await find_active(sessions, "alice", "demo", after) == paid
    assert paid.grants_access("alice", "demo", after)
    assert [s.session_id for s in await sessions.list_paid("alice", 10)] == [
        renewal.session_id, current.session_id]


async def test_a_renewal_left_unpaid_hands_the_slot_back(store: Store) -> None:
    sessions = store.sessions
    current = await bought(sessions)
    now = current.expires_at_ms - 9 * MINUTE_MS
    short = replace(pending(at_ms=now), expires_at_ms=now + MINUTE_MS)  # a short QR
    renewal, inserted = await sessions.insert_pending(short, now)
    assert inserted
    expired = await sessions.expire_due(now + MINUTE_MS, 100)
    assert [s.session_id for s in expired] == [renewal.session_id]
    later = now + 2 * MINUTE_MS
    assert await find_active(sessions, "alice", "demo", later) == current
    second, inserted = await sessions.insert_pending(pending(at_ms=later), later)
    assert inserted and second.renews == current.session_id


async def test_a_renewal_paid_after_the_window_it_continued_starts_at_payment(
        store: Store) -> None:
    sessions = store.sessions
    current = await bought(sessions)
    now = current.expires_at_ms - 5 * MINUTE_MS
    renewal, _ = await sessions.insert_pending(pending(at_ms=now), now)
    late = current.expires_at_ms + MINUTE_MS
    decision = await pay(sessions, renewal, at_ms=late)
    assert decision.applied
    paid = await sessions.get(renewal.session_id)
    assert paid is not None and (paid.starts_at_ms, paid.renews) == (late, None)


async def test_racing_renewals_make_one_qr(two_handles: tuple[Store, Store]) -> None:
    store, other = two_handles
    current = await bought(store.sessions)
    now = current.expires_at_ms - 5 * MINUTE_MS
    results = await asyncio.gather(*(
        handle.sessions.insert_pending(pending(at_ms=now), now)
        for handle in [store, other] * 10))
    assert sum(inserted for _, inserted in results) == 1
    renewal = next(session for session, inserted in results if inserted)
    assert all(session == renewal for session, _ in results)
    assert renewal.renews == current.session_id


async def test_a_ticket_bought_ahead_opens_at_the_start(store: Store) -> None:
    sessions = store.sessions
    start = T0 + 3600 * 1000
    ticket = await bought(sessions, terms=StreamTerms(ACCESS_MS, opens_at_ms=start))
    assert (ticket.paid_at_ms, ticket.starts_at_ms, ticket.expires_at_ms) == (
        T0, start, start + ACCESS_MS)
    assert await find_active(sessions, "alice", "demo", T0 + 1000) == ticket
    assert ticket.waiting_at(T0 + 1000) and not ticket.grants_access("alice", "demo", T0 + 1)
    assert ticket.grants_access("alice", "demo", start)
    # Waiting is holding: no second ticket, and no early renewal either.
    again, inserted = await sessions.insert_pending(pending(at_ms=T0 + 2000), T0 + 2000)
    assert (again, inserted) == (ticket, False)
    # Revoked before it opened: the gate must still learn of it at start-up, until the
    # end of the window it was paid for (the show's start plus the access window).
    ended = await sessions.end_paid_session(ticket.session_id, T0 + 3000)
    assert ended is not None and ended.paid_until_ms == start + ACCESS_MS
    assert [s.session_id for s in await sessions.ended_early(start + ACCESS_MS - 1)] == [
        ticket.session_id]
    assert await sessions.ended_early(start + ACCESS_MS) == []
