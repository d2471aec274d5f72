"""The pure decisions of gateway/model.py: given the rows as stored and a time, what
changes. No store, no clock: the time is an argument."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from gateway.model import (
    Notification,
    NotificationReason,
    PaymentContext,
    PaymentSession,
    SessionStatus,
    StreamTerms,
    decide_new_session,
    decide_payment,
    decide_revocation,
)
from gateway.settings import PROJECT_DIR

PENDING = PaymentSession("s" * 22, "alice", "demo", "simulator", "T1", 1000, 0, "q",
                         SessionStatus.PENDING, 1_000, None, 2_000)


def note(*, paid_at_ms: int | None = 500, received_at_ms: int = 1_500,
         event_id: str = "e") -> Notification:
    return Notification("simulator", event_id, "T1", 1000, "paid", paid_at_ms,
                        received_at_ms, "{}")


def test_decide_payment_is_a_pure_function_of_what_the_store_read() -> None:
    decision = decide_payment(PaymentContext(note(), PENDING, False, ()), StreamTerms(10_000))
    # paidAt is clamped to [createdAt, receivedAt]: never before the QR existed.
    assert decision.changed[-1].paid_at_ms == 1_000
    assert decision.changed[-1].expires_at_ms == 11_000
    future = note(paid_at_ms=9_999)
    assert decide_payment(PaymentContext(future, PENDING, False, ()),
                          StreamTerms(10_000)).changed[-1].paid_at_ms == 1_500


def test_a_status_is_exact_on_every_read() -> None:
    assert PENDING.status_at(1_999) == SessionStatus.PENDING
    assert PENDING.status_at(2_000) == SessionStatus.EXPIRED
    assert PENDING.is_stale(2_000) and not PENDING.is_stale(1_999)


def test_a_stale_session_read_by_a_payment_is_written_back_expired() -> None:
    # Received after the QR's window: the stored row still says pending.
    late = note(paid_at_ms=None, received_at_ms=3_000)
    decision = decide_payment(PaymentContext(late, PENDING, False, ()), StreamTerms(10_000))
    assert decision.reason == NotificationReason.PAID_AFTER_WINDOW
    assert [s.status for s in decision.expired] == [SessionStatus.EXPIRED]
    assert [s.status for s in decision.writes] == [SessionStatus.EXPIRED, SessionStatus.PAID]
    # Refused for another reason, the stale row is still written back expired.
    refused = decide_payment(PaymentContext(late, PENDING, True, ()), StreamTerms(10_000))
    assert refused.reason == NotificationReason.DUPLICATE_EVENT
    assert refused.changed == () and refused.expired[0].status == SessionStatus.EXPIRED


def test_a_stale_paid_session_does_not_make_a_late_payment_a_refund() -> None:
    old_paid = replace(PENDING, session_id="o" * 22, trx_id="T0", status=SessionStatus.PAID,
                       paid_at_ms=100, expires_at_ms=1_200)
    decision = decide_payment(PaymentContext(note(), PENDING, False, (old_paid,)),
                              StreamTerms(10_000))
    assert decision.applied and decision.reason == NotificationReason.PAID
    assert [s.session_id for s in decision.expired] == [old_paid.session_id]
    live_paid = replace(old_paid, expires_at_ms=5_000)
    refund = decide_payment(PaymentContext(note(), PENDING, False, (live_paid,)),
                            StreamTerms(10_000))
    assert refund.reason == NotificationReason.DUPLICATE_PAYMENT and not refund.applied


def test_a_new_session_replaces_only_a_stale_one() -> None:
    candidate = replace(PENDING, session_id="n" * 22, trx_id="T2", created_at_ms=2_500,
                        expires_at_ms=4_000)
    kept = decide_new_session(candidate, [PENDING], now_ms=1_500)
    assert (kept.session, kept.inserted, kept.expired) == (PENDING, False, ())
    replaced = decide_new_session(candidate, [PENDING], now_ms=2_500)
    assert replaced.inserted and replaced.session == candidate
    assert [s.status for s in replaced.expired] == [SessionStatus.EXPIRED]


def test_only_a_paid_unexpired_session_can_be_revoked() -> None:
    paid = replace(PENDING, status=SessionStatus.PAID, paid_at_ms=1_000, expires_at_ms=9_000)
    ended = decide_revocation(paid, now_ms=5_000)
    assert ended is not None and ended.status == SessionStatus.EXPIRED
    assert ended.expires_at_ms == 5_000
    assert decide_revocation(paid, now_ms=9_000) is None
    assert decide_revocation(PENDING, now_ms=1_500) is None


def test_the_model_stands_alone() -> None:
    # Imported on its own, it brings in no store, provider, use case or HTTP code.
    code = ("import sys, gateway.model; print(sorted(m for m in sys.modules if m.startswith("
            "('gateway.store', 'gateway.providers', 'gateway.sessions', 'aiohttp'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PROJECT_DIR, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


MINUTE_MS = 60_000
PAID = replace(PENDING, session_id="p" * 22, trx_id="T0", status=SessionStatus.PAID,
               paid_at_ms=1_000, starts_at_ms=1_000, expires_at_ms=1_000 + 120 * MINUTE_MS)


def test_the_next_window_is_sold_only_in_the_last_ten_minutes() -> None:
    candidate = replace(PENDING, session_id="n" * 22, trx_id="T2")
    early = PAID.expires_at_ms - 11 * MINUTE_MS
    refused = decide_new_session(candidate, [PAID], early)
    assert (refused.session, refused.inserted) == (PAID, False)
    late = PAID.expires_at_ms - 10 * MINUTE_MS
    renewal = decide_new_session(candidate, [PAID], late)
    assert renewal.inserted and renewal.session.renews == PAID.session_id
    # One window ahead at most: with a renewal paid, nothing more is sold.
    paid_next = replace(renewal.session, status=SessionStatus.PAID, paid_at_ms=late,
                        starts_at_ms=PAID.expires_at_ms,
                        expires_at_ms=PAID.expires_at_ms + 120 * MINUTE_MS)
    assert not decide_new_session(candidate, [PAID, paid_next], late + 1).inserted


def test_a_renewal_starts_where_its_window_ends_and_a_ticket_at_the_start() -> None:
    now = PAID.expires_at_ms - 5 * MINUTE_MS
    renewal = replace(PENDING, session_id="n" * 22, created_at_ms=now - 1000,
                      expires_at_ms=now + 20 * MINUTE_MS, renews=PAID.session_id)
    paid = decide_payment(
        PaymentContext(note(paid_at_ms=now, received_at_ms=now), renewal, False, (PAID,)),
        StreamTerms(60 * MINUTE_MS)).changed
    assert [s.session_id for s in paid] == [renewal.session_id]  # the current one stays
    assert (paid[0].starts_at_ms, paid[0].expires_at_ms) == (
        PAID.expires_at_ms, PAID.expires_at_ms + 60 * MINUTE_MS)
    ahead = decide_payment(PaymentContext(note(), PENDING, False, ()),
                           StreamTerms(10_000, opens_at_ms=50_000)).changed[-1]
    assert (ahead.paid_at_ms, ahead.starts_at_ms, ahead.expires_at_ms) == (1_000, 50_000,
                                                                          60_000)
    assert ahead.waiting_at(49_999) and not ahead.grants_access("alice", "demo", 49_999)
    assert ahead.grants_access("alice", "demo", 50_000)
