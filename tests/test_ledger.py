"""The ledger's model (gateway/ledger.py): which lists an entry is listed under, which
one a query reads, and what settling moves. No store: the stores keep the lists these
decisions name (tests/store/test_ledger_contract.py)."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

from gateway.ledger import (
    LedgerEntry,
    LedgerQuery,
    LedgerScan,
    LedgerStatus,
    Settlement,
    decide_settlement,
    ledger_tag,
    ledger_tags,
)
from gateway.model import Notification

NOTE = Notification("simulator", "e1", "T1", 1000, "paid", 5_000, 5_000, "{}")
PAID = LedgerEntry(7, NOTE, True, "paid", "s1", "demo")
SHORT = LedgerEntry(8, NOTE, False, "amount_mismatch", "s2", "demo")
GHOST = LedgerEntry(9, NOTE, False, "unknown_transaction", None, None)
SETTLEMENT = Settlement(9_000, "Sari", "refunded by bank transfer")
STREAMS = (None, "demo", "news")
REASONS = (None, "paid", "amount_mismatch", "unknown_transaction", "duplicate_event")


def test_a_query_reads_the_one_list_of_exactly_its_filters() -> None:
    # For every combination of filters, an entry is in the query's list exactly when
    # the query matches it: the list needs no second look, whatever the filters.
    entries = [PAID, SHORT, GHOST, replace(SHORT, settlement=SETTLEMENT),
               LedgerEntry(10, NOTE, False, "duplicate_event", "s1", "demo")]
    for stream_id, reason, status in product(STREAMS, REASONS, (None, *LedgerStatus)):
        query = LedgerQuery(stream_id=stream_id, reason=reason, status=status)
        for entry in entries:
            assert (query.scan().tag in ledger_tags(entry)) == query.matches(entry), (
                query, entry)


def test_tags_name_stream_reason_and_status_and_the_whole_ledger() -> None:
    assert ledger_tag(None, None, None) == "all"
    assert ledger_tag("demo", None, LedgerStatus.REFUSED) == "stream=demo&status=refused"
    assert ledger_tag("a&b=c", "x", None) == "stream=a%26b%3Dc&reason=x"  # no ambiguity
    assert len(ledger_tags(PAID)) == 8  # (any, demo) x (any, paid) x (any, applied)
    assert len(ledger_tags(SHORT)) == 12  # refused and waiting for a person
    assert ledger_tags(GHOST) == {  # its stream is unknown: listed under none
        ledger_tag(None, reason, status)
        for reason in (None, "unknown_transaction")
        for status in (None, LedgerStatus.REFUSED, LedgerStatus.ATTENTION)}


def test_dates_and_the_cursor_bound_the_stretch_read() -> None:
    assert LedgerQuery().scan() == LedgerScan("all", None, None)
    assert LedgerQuery(from_ms=1_000, to_ms=2_000).scan() == LedgerScan(
        "all", (1_000, 0), (2_000, 0))
    # The cursor continues a page; a date before it ends the listing sooner.
    assert LedgerQuery(to_ms=2_000, before=(1_500, 3)).scan().before == (1_500, 3)
    assert LedgerQuery(to_ms=2_000, before=(2_500, 3)).scan().before == (2_000, 0)
    # What the bounds keep is what `matches` keeps.
    query = LedgerQuery(from_ms=5_000, to_ms=5_001)
    scan = query.scan()
    assert scan.since is not None and scan.before is not None
    assert query.matches(PAID) and scan.since <= PAID.cursor < scan.before
    assert not LedgerQuery(to_ms=5_000).matches(PAID)
    assert LedgerQuery(to_ms=5_000).scan().before == (5_000, 0) < PAID.cursor


def test_settling_moves_an_entry_from_attention_to_settled_once() -> None:
    decision = decide_settlement(SHORT, SETTLEMENT)
    assert decision is not None
    assert decision.entry == replace(SHORT, settlement=SETTLEMENT)
    assert decision.entry.status is LedgerStatus.SETTLED
    assert decision.untag == {ledger_tag(stream_id, reason, LedgerStatus.ATTENTION)
                              for stream_id in (None, "demo")
                              for reason in (None, "amount_mismatch")}
    assert decision.tag == {ledger_tag(stream_id, reason, LedgerStatus.SETTLED)
                            for stream_id in (None, "demo")
                            for reason in (None, "amount_mismatch")}
    assert ledger_tags(decision.entry) == ledger_tags(SHORT) - decision.untag | decision.tag
    assert decide_settlement(decision.entry, SETTLEMENT) is None  # once
    assert decide_settlement(PAID, SETTLEMENT) is None  # nobody needs to deal with it
