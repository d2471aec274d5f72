"""The contract of the store's ledger (`Ledger`), on every backend: every notification
kept with what was made of it, the console's filters and pages (each filter meaning
what gateway/ledger.py says), settlements, and the hourly sales counters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.ledger import HOUR_MS, LedgerEntry, LedgerQuery, LedgerStatus, SalesBucket, Settlement
from gateway.model import StreamTerms, decide_payment
from gateway.store.base import Store
from tests.store.conftest import ACCESS_MS, T0, fill_ledger, paid_note, pay, pending


def trx_reasons(entries: list[LedgerEntry]) -> list[tuple[str, str]]:
    return [(entry.notification.trx_id, entry.reason) for entry in entries]


async def test_every_notification_is_kept_in_the_order_it_came(store: Store) -> None:
    session, _ = await store.sessions.insert_pending(pending(), T0)
    await pay(store.sessions, session, at_ms=T0 + 1000, event_id="e1", amount=1)
    await pay(store.sessions, session, at_ms=T0 + 2000, event_id="e2")
    await pay(store.sessions, replace(session, trx_id="UNKNOWN"), at_ms=T0 + 3000,
              event_id="e3")
    ledger = await store.ledger.notifications()
    assert [(n.notification.event_id, n.applied, n.reason) for n in ledger] == [
        ("e3", False, "unknown_transaction"), ("e2", True, "paid"),
        ("e1", False, "amount_mismatch")]
    assert ledger[1].session_id == session.session_id and ledger[0].session_id is None
    assert ledger[1].notification == paid_note(session, at_ms=T0 + 2000, event_id="e2")
    mine = await store.ledger.notifications(trx_id=session.trx_id, limit=1)
    assert [n.notification.event_id for n in mine] == ["e2"]


async def test_the_fee_a_payer_paid_on_top_is_kept(store: Store) -> None:
    session, _ = await store.sessions.insert_pending(pending(), T0)
    note = replace(paid_note(session, at_ms=T0 + 1000), fee=71)
    await store.sessions.apply_notification(
        note, lambda context: decide_payment(context, StreamTerms(ACCESS_MS)))
    [entry] = await store.ledger.notifications(session.trx_id)
    assert entry.notification == note and entry.notification.fee == 71


async def test_the_ledger_lists_every_notification_newest_first_with_its_outcome(
        store: Store) -> None:
    trx = await fill_ledger(store.sessions)
    entries = await store.ledger.ledger(LedgerQuery(), 100)
    assert trx_reasons(entries) == [
        ("GHOST1", "unknown_transaction"), (trx["alice"], "duplicate_event"),
        (trx["bob"], "paid"), (trx["bob"], "amount_mismatch"), (trx["alice"], "paid")]
    assert [entry.stream_id for entry in entries] == [None, "demo", "news", "news", "demo"]
    assert [entry.status for entry in entries] == [
        LedgerStatus.ATTENTION, LedgerStatus.REFUSED, LedgerStatus.APPLIED,
        LedgerStatus.ATTENTION, LedgerStatus.APPLIED]
    assert await store.ledger.ledger_entry(entries[2].entry_id) == entries[2]
    assert await store.ledger.ledger_entry(999_999) is None


async def test_the_ledger_filters_by_stream_reason_status_and_date(store: Store) -> None:
    trx = await fill_ledger(store.sessions)

    async def listed(**query: Any) -> list[tuple[str, str]]:
        return trx_reasons(await store.ledger.ledger(LedgerQuery(**query), 100))

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
    assert await listed(reason="paid", status=LedgerStatus.REFUSED) == []  # none can match


async def test_the_ledger_pages_without_gaps_or_repeats(store: Store) -> None:
    await fill_ledger(store.sessions)
    everything = await store.ledger.ledger(LedgerQuery(), 100)
    pages, before = [], None
    while True:
        page = await store.ledger.ledger(LedgerQuery(before=before), 2)
        if not page:
            break
        pages.append(page)
        before = page[-1].cursor
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [entry for page in pages for entry in page] == everything
    refused = await store.ledger.ledger(LedgerQuery(status=LedgerStatus.REFUSED), 100)
    second = await store.ledger.ledger(LedgerQuery(status=LedgerStatus.REFUSED,
                                                   before=refused[0].cursor), 100)
    assert second == refused[1:]


async def test_settling_records_who_and_why_and_changes_no_session(store: Store) -> None:
    ledger = store.ledger
    trx = await fill_ledger(store.sessions)
    mismatch = (await ledger.ledger(LedgerQuery(reason="amount_mismatch"), 1))[0]
    bob_before = await store.sessions.get_by_trx("simulator", trx["bob"])
    settlement = Settlement(T0 + 9000, "Sari", "refunded Rp 4.000 by bank transfer")
    settled = await ledger.settle(mismatch.entry_id, settlement)
    assert settled is not None and settled.settlement == settlement
    assert settled.status == LedgerStatus.SETTLED
    assert await ledger.ledger_entry(mismatch.entry_id) == settled
    assert trx_reasons(await ledger.ledger(LedgerQuery(status=LedgerStatus.ATTENTION), 10)) \
        == [("GHOST1", "unknown_transaction")]
    assert await ledger.ledger(LedgerQuery(status=LedgerStatus.SETTLED), 10) == [settled]
    assert await ledger.ledger(LedgerQuery(status=LedgerStatus.REFUSED, stream_id="news"),
                               10) == [settled]
    assert await store.sessions.get_by_trx("simulator", trx["bob"]) == bob_before
    # Once only, and only for what needs a person.
    assert await ledger.settle(mismatch.entry_id, settlement) is None
    paid = (await ledger.ledger(LedgerQuery(reason="paid"), 1))[0]
    assert await ledger.settle(paid.entry_id, settlement) is None
    assert await ledger.settle(999_999, settlement) is None


async def test_sales_are_counted_per_stream_and_hour(store: Store) -> None:
    sessions = store.sessions
    hour = T0 - T0 % HOUR_MS
    first = pending("alice", "demo", at_ms=hour + 10)
    await sessions.insert_pending(first, hour + 10)
    second = pending("bob", "demo", at_ms=hour + 20)
    await sessions.insert_pending(second, hour + 20)
    news = pending("carol", "news", at_ms=hour + 30, amount=5000)
    await sessions.insert_pending(news, hour + 30)
    await pay(sessions, first, at_ms=hour + HOUR_MS + 5, event_id="a")  # paid the next hour
    await pay(sessions, news, at_ms=hour + 40, event_id="b")
    await pay(sessions, second, at_ms=hour + 50, event_id="c", amount=1)  # refused: no sale
    assert await store.ledger.sales(hour, hour + 2 * HOUR_MS) == [
        SalesBucket("demo", hour, 2, 0, 0), SalesBucket("news", hour, 1, 1, 5000),
        SalesBucket("demo", hour + HOUR_MS, 0, 1, 1000)]
    assert await store.ledger.sales(hour + HOUR_MS, hour + 2 * HOUR_MS) == [
        SalesBucket("demo", hour + HOUR_MS, 0, 1, 1000)]
    assert await store.ledger.sales(hour + 2 * HOUR_MS, hour + 3 * HOUR_MS) == []
