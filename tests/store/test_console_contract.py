"""The store's side of the operator's console, on every backend: the ledger's filters
and pages, settlements, sales counters, paid sessions per stream, a viewer's sessions."""

from __future__ import annotations

from gateway.ledger import HOUR_MS, LedgerQuery, LedgerStatus, SalesBucket, Settlement
from gateway.model import SessionStatus, decide_payment
from gateway.store.base import SessionStore
from tests.store.test_contract import ACCESS_MS, T0, paid_note, pay, pending


async def unknown_payment(store: SessionStore, *, at_ms: int, trx_id: str) -> None:
    ghost = pending(trx_id=trx_id)
    await store.apply_notification(
        paid_note(ghost, at_ms=at_ms, event_id=f"evt-{trx_id}"),
        lambda context: decide_payment(context, ACCESS_MS))


async def fill(store: SessionStore) -> dict[str, str]:
    """A small ledger: paid on two streams, a wrong amount, a duplicate, an unknown
    transaction; one notification a second. Returns trxIds by what happened."""
    alice = pending("alice", "demo", at_ms=T0)
    await store.insert_pending(alice, T0)
    await pay(store, alice, at_ms=T0 + 1000, event_id="e1")
    bob = pending("bob", "news", at_ms=T0, amount=5000)
    await store.insert_pending(bob, T0)
    await pay(store, bob, at_ms=T0 + 2000, event_id="e2", amount=4000)
    await pay(store, bob, at_ms=T0 + 3000, event_id="e3")
    await pay(store, alice, at_ms=T0 + 4000, event_id="e1")  # the same event again
    await unknown_payment(store, at_ms=T0 + 5000, trx_id="GHOST1")
    return {"alice": alice.trx_id, "bob": bob.trx_id}


def trx_reasons(entries: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(entry.notification.trx_id, entry.reason) for entry in entries]


async def test_the_ledger_lists_every_notification_newest_first_with_its_outcome(
        store: SessionStore) -> None:
    trx = await fill(store)
    entries = await store.ledger(LedgerQuery(), 100)
    assert trx_reasons(entries) == [
        ("GHOST1", "unknown_transaction"), (trx["alice"], "duplicate_event"),
        (trx["bob"], "paid"), (trx["bob"], "amount_mismatch"), (trx["alice"], "paid")]
    assert [entry.stream_id for entry in entries] == [None, "demo", "news", "news", "demo"]
    assert [entry.status for entry in entries] == [
        LedgerStatus.ATTENTION, LedgerStatus.REFUSED, LedgerStatus.APPLIED,
        LedgerStatus.ATTENTION, LedgerStatus.APPLIED]
    assert await store.ledger_entry(entries[2].entry_id) == entries[2]
    assert await store.ledger_entry(999_999) is None


async def test_the_ledger_filters_by_stream_reason_status_and_date(store: SessionStore) -> None:
    trx = await fill(store)

    async def listed(**query: object) -> list[tuple[str, str]]:
        return trx_reasons(await store.ledger(LedgerQuery(**query), 100))  # type: ignore[arg-type]

    assert await listed(stream_id="news") == [(trx["bob"], "paid"),
                                              (trx["bob"], "amount_mismatch")]
    assert await listed(reason="paid") == [(trx["bob"], "paid"), (trx["alice"], "paid")]
    assert await listed(stream_id="demo", reason="paid") == [(trx["alice"], "paid")]
    assert await listed(status=LedgerStatus.REFUSED) == [
        ("GHOST1", "unknown_transaction"), (trx["alice"], "duplicate_event"),
        (trx["bob"], "amount_mismatch")]
    assert await listed(status=LedgerStatus.APPLIED, stream_id="news") == [
        (trx["bob"], "paid")]
    assert await listed(status=LedgerStatus.ATTENTION) == [
        ("GHOST1", "unknown_transaction"), (trx["bob"], "amount_mismatch")]
    assert await listed(from_ms=T0 + 2000, to_ms=T0 + 4000) == [
        (trx["bob"], "paid"), (trx["bob"], "amount_mismatch")]
    assert await listed(stream_id="nothing") == []


async def test_the_ledger_pages_without_gaps_or_repeats(store: SessionStore) -> None:
    await fill(store)
    everything = await store.ledger(LedgerQuery(), 100)
    pages, before = [], None
    while True:
        page = await store.ledger(LedgerQuery(before=before), 2)
        if not page:
            break
        pages.append(page)
        before = page[-1].cursor
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [entry for page in pages for entry in page] == everything
    refused = await store.ledger(LedgerQuery(status=LedgerStatus.REFUSED), 100)
    second = await store.ledger(LedgerQuery(status=LedgerStatus.REFUSED,
                                            before=refused[0].cursor), 100)
    assert second == refused[1:]


async def test_settling_records_who_and_why_and_changes_no_session(store: SessionStore) -> None:
    trx = await fill(store)
    mismatch = (await store.ledger(LedgerQuery(reason="amount_mismatch"), 1))[0]
    bob_before = await store.get_by_trx("simulator", trx["bob"])
    settlement = Settlement(T0 + 9000, "Sari", "refunded Rp 4.000 by bank transfer")
    settled = await store.settle(mismatch.entry_id, settlement)
    assert settled is not None and settled.settlement == settlement
    assert settled.status == LedgerStatus.SETTLED
    assert await store.ledger_entry(mismatch.entry_id) == settled
    assert trx_reasons(await store.ledger(LedgerQuery(status=LedgerStatus.ATTENTION), 10)) \
        == [("GHOST1", "unknown_transaction")]
    assert await store.ledger(LedgerQuery(status=LedgerStatus.SETTLED), 10) == [settled]
    assert await store.get_by_trx("simulator", trx["bob"]) == bob_before
    # Once only, and only for what needs a person.
    assert await store.settle(mismatch.entry_id, settlement) is None
    paid = (await store.ledger(LedgerQuery(reason="paid"), 1))[0]
    assert await store.settle(paid.entry_id, settlement) is None
    assert await store.settle(999_999, settlement) is None


async def test_sales_are_counted_per_stream_and_hour(store: SessionStore) -> None:
    hour = T0 - T0 % HOUR_MS
    first = pending("alice", "demo", at_ms=hour + 10)
    await store.insert_pending(first, hour + 10)
    second = pending("bob", "demo", at_ms=hour + 20)
    await store.insert_pending(second, hour + 20)
    news = pending("carol", "news", at_ms=hour + 30, amount=5000)
    await store.insert_pending(news, hour + 30)
    await pay(store, first, at_ms=hour + HOUR_MS + 5, event_id="a")  # paid the next hour
    await pay(store, news, at_ms=hour + 40, event_id="b")
    await pay(store, second, at_ms=hour + 50, event_id="c", amount=1)  # refused: no sale
    assert await store.sales(hour, hour + 2 * HOUR_MS) == [
        SalesBucket("demo", hour, 2, 0, 0), SalesBucket("news", hour, 1, 1, 5000),
        SalesBucket("demo", hour + HOUR_MS, 0, 1, 1000)]
    assert await store.sales(hour + HOUR_MS, hour + 2 * HOUR_MS) == [
        SalesBucket("demo", hour + HOUR_MS, 0, 1, 1000)]
    assert await store.sales(hour + 2 * HOUR_MS, hour + 3 * HOUR_MS) == []


async def test_paid_now_counts_open_access_per_stream(store: SessionStore) -> None:
    sessions = [pending(user, stream, at_ms=T0)
                for user, stream in (("a", "demo"), ("b", "demo"), ("c", "news"), ("d", "demo"))]
    for index, session in enumerate(sessions[:3]):
        await store.insert_pending(session, T0)
        await pay(store, session, at_ms=T0 + 1000, event_id=f"e{index}")
    await store.insert_pending(sessions[3], T0)  # pending: not playing
    assert await store.paid_now(T0 + 2000) == {"demo": 2, "news": 1}
    await store.end_paid_session(sessions[0].session_id, T0 + 3000)
    assert await store.paid_now(T0 + 3000) == {"demo": 1, "news": 1}
    assert await store.paid_now(T0 + 1000 + ACCESS_MS) == {}


async def test_sessions_of_a_user_of_any_status_newest_first(store: SessionStore) -> None:
    old = pending("alice", "demo", at_ms=T0)
    await store.insert_pending(old, T0)
    later = T0 + 1_300_000  # after the first QR's payment window
    new = pending("alice", "demo", at_ms=later)
    await store.insert_pending(new, later)
    other = pending("alice", "news", at_ms=later + 1)
    await store.insert_pending(other, later + 1)
    await store.insert_pending(pending("bob", "demo", at_ms=later), later)
    found = await store.sessions_of_user("alice", 10)
    assert [session.session_id for session in found] == [
        other.session_id, new.session_id, old.session_id]
    assert found[2].status == SessionStatus.EXPIRED
    assert [session.session_id for session in await store.sessions_of_user("alice", 1)] == [
        other.session_id]
    assert await store.sessions_of_user("nobody", 10) == []


async def test_playing_now_counts_places_seen_lately_per_stream(store: SessionStore) -> None:
    sessions = [pending(user, stream, at_ms=T0)
                for user, stream in (("a", "demo"), ("b", "demo"), ("c", "news"))]
    for index, session in enumerate(sessions):
        await store.insert_pending(session, T0)
        await pay(store, session, at_ms=T0 + 1000, event_id=f"e{index}")
    now = T0 + 60_000
    assert await store.playing_now(now, now - 30_000) == {}
    grants = []
    for index, session in enumerate(sessions):
        grant, _ = await store.grant_for_device(session.session_id, f"device:d{index}", now,
                                                f"grant{index:012d}", now - 30_000)
        grants.append(grant)
    # Two places for the first purchase (a shared link), one for the third; the second
    # has a grant that nothing has played.
    for grant, address in ((grants[0], "10.0.0.1"), (grants[0], "10.0.0.2"),
                           (grants[2], "10.0.0.3")):
        await store.claim_place(grant.session_id, grant.grant_id, address, now,
                                now - 30_000, 0)
    assert await store.playing_now(now, now - 30_000) == {"demo": 2, "news": 1}
    # Thirty seconds of silence and a place no longer plays; an ended grant frees its
    # places; a purchase revoked plays nowhere.
    assert await store.playing_now(now + 30_001, now + 1) == {}
    await store.end_grant(grants[2].grant_id, now + 1000)
    assert await store.playing_now(now + 1000, now - 29_000) == {"demo": 2}
    await store.end_paid_session(sessions[0].session_id, now + 2000)
    assert await store.playing_now(now + 2000, now - 28_000) == {}
