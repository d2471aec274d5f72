"""Reconciliation: ask the provider about payments whose notification has not come.

Notifications get lost (a provider outage, a timeout on our side, Xendit does not retry
a timed-out delivery at all). So unpaid sessions a little older than `delay` are asked
about through the provider's status API, each on its own backoff (asked again after
2x, 4x, 8x ... the delay, capped at 10 minutes), a few at a time, and a "paid" answer
is recorded through exactly the path a notification takes (`record_notification`), so
every rule of rule 3 applies and the ledger shows it (event id `status:<trxId>:paid`).

When a session's payment window has ended and the provider still calls it pending,
the provider is told to cancel it where its API allows (`Provider.cancel`); a payment
that lands anyway is handled as a late payment, like any other.

The memory here (backoff, what was settled) is per process and only an optimisation:
with several instances each asks too, and the store's transactions make that safe.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.model import PaymentSession, SessionStatus
from gateway.providers.base import Provider, TransactionState, status_notification
from gateway.sessions import SessionService

log = logging.getLogger("gateway.reconcile")


@dataclass
class _Schedule:
    next_check_ms: int
    checks: int = 0
    failures: int = 0
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    asked: int
    paid: int
    failed: int
    cancelled: int


class Reconciler:
    def __init__(self, sessions: SessionService, provider: Provider, clock: Clock, *,
                 delay_seconds: int, payment_window_seconds: int,
                 concurrency: int = 4, batch_size: int = 200,
                 max_backoff_seconds: int = 600, follow_after_window_seconds: int = 7200,
                 metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._sessions = sessions
        self._provider = provider
        self._clock = clock
        self._delay_ms = delay_seconds * 1000
        self._max_backoff_ms = max_backoff_seconds * 1000
        # How long after creation a session is still worth asking about: its window,
        # then a while more for payments made at its very end (or from a screenshot).
        self._horizon_ms = (payment_window_seconds + follow_after_window_seconds) * 1000
        self._concurrency = concurrency
        self._batch_size = batch_size
        self._schedule: dict[str, _Schedule] = {}
        self._done: set[str] = set()  # settled here: recorded, or ended at the provider

    async def run_once(self) -> ReconcileReport:
        """One round: ask about every due session, at most `concurrency` at a time."""
        now_ms = self._clock()
        candidates = await self._sessions.unpaid_created_between(
            now_ms - self._horizon_ms, now_ms - self._delay_ms, self._batch_size)
        alive = {session.session_id for session in candidates}
        # Forget sessions that left the window (paid by a notification, pruned, old).
        for session_id in [s for s in self._schedule if s not in alive]:
            del self._schedule[session_id]
        self._done &= alive
        due = [session for session in candidates
               if session.session_id not in self._done
               and self._schedule.setdefault(session.session_id, _Schedule(0)).next_check_ms
               <= now_ms]
        limit = asyncio.Semaphore(self._concurrency)
        outcomes = await asyncio.gather(*(self._ask(session, limit) for session in due))
        if self._metrics is not None:
            for outcome in outcomes:
                self._metrics.reconcile_questions.labels(outcome).inc()
        report = ReconcileReport(
            asked=len(due), paid=outcomes.count("paid"), failed=outcomes.count("failed"),
            cancelled=outcomes.count("cancelled"))
        if report.asked:
            log_event(log, "reconciled", provider=self._provider.name, asked=report.asked,
                      paid=report.paid, failed=report.failed, cancelled=report.cancelled)
        return report

    async def _ask(self, session: PaymentSession, limit: asyncio.Semaphore) -> str:
        schedule = self._schedule[session.session_id]
        async with limit:
            try:
                status = await self._provider.transaction_status(session.trx_id)
                if status.state == TransactionState.PAID:
                    decision = await self._sessions.record_notification(
                        status_notification(self._provider.name, status, self._clock()))
                    self._done.add(session.session_id)
                    log_event(log, "reconciled_payment", sessionId=session.session_id,
                              trxId=session.trx_id, applied=decision.applied,
                              reason=decision.reason)
                    return "paid"
                now_ms = self._clock()
                window_over = session.status_at(now_ms) == SessionStatus.EXPIRED
                if window_over and status.state == TransactionState.EXPIRED:
                    self._done.add(session.session_id)
                    return "ended"
                if window_over and status.state == TransactionState.PENDING \
                        and not schedule.cancelled:
                    schedule.cancelled = True
                    cancelled = await self._provider.cancel(session.trx_id)
                    self._next(schedule, now_ms, failed=False)
                    return "cancelled" if cancelled else "pending"
            except Exception as exc:  # an outage slows reconciliation, nothing else
                log_event(log, "reconcile_failed", level=logging.WARNING,
                          sessionId=session.session_id, trxId=session.trx_id,
                          failure=type(exc).__name__)
                self._next(schedule, self._clock(), failed=True)
                return "failed"
            self._next(schedule, self._clock(), failed=False)
            return "pending"

    def _next(self, schedule: _Schedule, now_ms: int, *, failed: bool) -> None:
        if failed:
            schedule.failures += 1
        else:
            schedule.checks += 1
            schedule.failures = 0
        steps = schedule.checks + schedule.failures
        backoff_ms = min(self._max_backoff_ms, self._delay_ms * 2 ** min(steps, 20))
        schedule.next_check_ms = now_ms + backoff_ms
