"""The refund use cases (SPEC, "Refunds and cancelled shows"): give a payment's money
back through the provider that took it, close a manual one by hand, hear the provider's
word on a refund, ask again when it never answered, and cancel a show. The rules are in
`gateway/refund_model.py`; this module drives them through the store's parts and the
provider interface. No HTTP.

Why it can never pay out twice: a refund is written, with its idempotency key, before
the provider is asked; whatever happens after (no answer, a timeout, this process
killed before the answer is written down), the refund is still `requested` without the
provider's id, and is asked again with the same key, which the provider honours once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from gateway.catalog import Catalog
from gateway.clock import Clock
from gateway.errors import NothingToRefund, RefundNotFound, UnknownStream
from gateway.logs import log_event
from gateway.model import Notification, SessionStatus
from gateway.providers.base import (
    MAX_REFUND_REASON_CHARS,
    Provider,
    RefundOutcome,
    RefundRequest,
    RefundStatus,
)
from gateway.refund_model import (
    ENDED_BY_CANCELLATION,
    ENDED_BY_REFUND,
    Cancellation,
    Refund,
    RefundAsked,
    after_answer,
    closed_by_hand,
    decide_refund,
    received_rupiah,
)
from gateway.refund_model import RefundStatus as Stand
from gateway.sessions import SessionService
from gateway.store.base import Cancellations, Ledger, Refunds

log = logging.getLogger("gateway.refunds")

# One provider call's bound; beyond it the outcome is unknown and the refund is asked
# again later (same key).
ASK_TIMEOUT_S = 20.0
CANCELLED_BY = "cancellation"


class RefundService:
    def __init__(self, refunds: Refunds, cancellations: Cancellations, ledger: Ledger,
                 sessions: SessionService, provider: Provider, catalog: Catalog,
                 clock: Clock, *, retry_after_seconds: int = 60) -> None:
        self._retry_after_ms = retry_after_seconds * 1000
        self._refunds = refunds
        self._cancellations = cancellations
        self._ledger = ledger
        self._sessions = sessions
        self._provider = provider
        self._catalog = catalog
        self._clock = clock
        # Shows cancelled, as this instance last read them (every instance re-reads them
        # on its own; a cancellation made elsewhere takes at most that long to stop sales).
        self.cancelled: dict[str, Cancellation] = {}

    # --- asking for money back -------------------------------------------------------

    async def request(self, trx_id: str, amount: int | None, reason: str,
                      requested_by: str) -> Refund:
        """Refund (part of) a payment: written first, the ticket's access ended at once,
        then the provider asked. Raises NothingToRefund, RefundTooLarge."""
        refund = await self._create(trx_id, amount, reason, requested_by)
        return await self._ask(refund)

    async def _create(self, trx_id: str, amount: int | None, reason: str,
                      requested_by: str) -> Refund:
        received = received_rupiah(await self._ledger.notifications(trx_id, limit=1000))
        if received == 0:
            raise NothingToRefund(paid=0, refunded=0)
        session = await self._sessions.by_trx(trx_id)
        # A ticket: money that bought access (not a duplicate payment or a wrong amount).
        ticket = session if session is not None and session.paid_at_ms is not None else None
        asked = RefundAsked(
            trx_id=trx_id, provider=self._provider.name, received_rupiah=received,
            amount=amount, reason=reason[:MAX_REFUND_REASON_CHARS], requested_by=requested_by,
            session_id=ticket.session_id if ticket else None,
            stream_id=ticket.stream_id if ticket else None,
            by_api=self._provider.refunds_by_api)
        now_ms = self._clock()
        refund = await self._refunds.create(
            trx_id, lambda existing: decide_refund(asked, existing, now_ms))
        log_event(log, "refund_requested", refundId=refund.refund_id, trxId=trx_id,
                  amount=refund.amount, status=refund.status, by=requested_by)
        if ticket is not None and ticket.status_at(now_ms) == SessionStatus.PAID:
            await self._sessions.revoke(
                ticket.session_id, reason=f"refund {refund.refund_id}",
                ended_by=ENDED_BY_CANCELLATION if requested_by == CANCELLED_BY
                else ENDED_BY_REFUND)
        return refund

    async def _ask(self, refund: Refund) -> Refund:
        """Ask the provider (with the refund's own key), and write down its answer."""
        if refund.status != Stand.REQUESTED:
            return refund  # a person's task (manual), or over
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                outcome = await self._provider.refund(RefundRequest(
                    trx_id=refund.trx_id, amount_rupiah=refund.amount, reason=refund.reason,
                    idempotency_key=refund.refund_id))
        except TimeoutError:
            outcome = RefundOutcome(RefundStatus.UNKNOWN)
        answered = after_answer(refund, outcome.status.value, self._clock(),
                                provider_refund_id=outcome.provider_refund_id,
                                failure_code=outcome.failure_code, asked=True)
        await self._save(refund, answered)
        log_event(log, "refund_asked", refundId=refund.refund_id, trxId=refund.trx_id,
                  outcome=outcome.status, providerRefundId=outcome.provider_refund_id,
                  failureCode=outcome.failure_code, attempts=answered.attempts,
                  level=logging.WARNING if outcome.status == RefundStatus.FAILED
                  else logging.INFO)
        return answered

    async def _save(self, before: Refund, after: Refund) -> None:
        if after == before:
            return
        await self._refunds.save(after)
        if (after.status == Stand.SUCCEEDED and before.status != Stand.SUCCEEDED
                and after.stream_id is not None):
            await self._ledger.count_refund(after.stream_id, after.updated_at_ms, after.amount)

    async def ask_unanswered(self, limit: int = 50) -> int:
        """Ask again about refunds the provider never answered (same key, so never
        twice): background, worker 0. Returns how many were asked."""
        now_ms = self._clock()
        due = [refund for refund in await self._refunds.unanswered(limit)
               if refund.due(now_ms, self._retry_after_ms)]
        for refund in due:
            await self._ask(refund)
        return len(due)

    # --- what the provider says --------------------------------------------------------

    async def notification_recorded(self, notification: Notification) -> None:
        """A recorded notification that reports on refunds (Midtrans' refund,
        Xendit's qr.refund): the refunds it names take the state it says."""
        for report in self._provider.refund_reports(notification):
            refund = None
            if report.idempotency_key is not None:
                refund = await self._refunds.get(report.idempotency_key)
            if refund is None and report.provider_refund_id is not None:
                refund = await self._refunds.by_provider_id(report.provider_refund_id)
            if refund is None:
                log_event(log, "refund_report_unmatched", level=logging.WARNING,
                          trxId=report.trx_id, providerRefundId=report.provider_refund_id,
                          status=report.status)
                continue
            reported = after_answer(refund, report.status.value, self._clock(),
                                    provider_refund_id=report.provider_refund_id,
                                    failure_code=report.failure_code)
            await self._save(refund, reported)
            log_event(log, "refund_reported", refundId=refund.refund_id,
                      trxId=refund.trx_id, status=reported.status)

    # --- a person ------------------------------------------------------------------------

    async def close_by_hand(self, refund_id: str, operator: str, note: str) -> Refund:
        """A person gave a manual (or failed) refund's money back themselves."""
        refund = await self._refunds.get(refund_id)
        if refund is None:
            raise RefundNotFound()
        closed = closed_by_hand(refund, operator, note, self._clock())
        if closed is None:
            return refund
        await self._save(refund, closed)
        log_event(log, "refund_closed_by_hand", refundId=refund_id, trxId=refund.trx_id,
                  operator=operator, note=note)
        return closed

    async def get(self, refund_id: str) -> Refund:
        refund = await self._refunds.get(refund_id)
        if refund is None:
            raise RefundNotFound()
        return refund

    async def listing(self, status: Stand | None, trx_id: str | None,
                      limit: int) -> list[Refund]:
        return await self._refunds.listing(status, trx_id, limit)

    async def of_payment(self, trx_id: str) -> list[Refund]:
        return await self._refunds.of_payment(trx_id)

    # --- cancelled shows ---------------------------------------------------------------

    async def cancel_show(self, stream_id: str, reason: str, by: str) -> tuple[Cancellation, int]:
        """Nothing more is sold for the show, and every paid ticket is refunded: each one
        written (and its access ended) now, the provider asked in the background.
        Returns the cancellation and how many refunds it made. Asking again refunds
        what the first time could not (a ticket paid since, say), never twice."""
        if self._catalog.get(stream_id) is None:
            raise UnknownStream()
        cancellation = await self._cancellations.cancel(
            Cancellation(stream_id, reason, self._clock(), by))
        self.cancelled[stream_id] = cancellation
        log_event(log, "show_cancelled", streamId=stream_id, reason=cancellation.reason,
                  by=cancellation.cancelled_by)
        made = 0
        for ticket in await self._sessions.tickets_of(stream_id):
            try:
                await self._create(ticket.trx_id, None, f"show cancelled: {reason}",
                                   CANCELLED_BY)
                made += 1
            except NothingToRefund:
                pass  # refunded already
        return cancellation, made

    async def read_cancellations(self) -> dict[str, Cancellation]:
        self.cancelled = await self._cancellations.all()
        return self.cancelled

    def is_cancelled(self, stream_id: str) -> bool:
        return stream_id in self.cancelled

    async def refunds_of_viewer_ticket(self, trx_id: str) -> list[Refund]:
        """What a viewer may see of their ticket's refunds (amounts and states)."""
        return [replace(refund, note="") for refund in await self._refunds.of_payment(trx_id)]
