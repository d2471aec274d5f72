"""How a payment session looks to the outside world: its JSON, in the SPEC's names
(camelCase, times in ms since the epoch, durations in ms). Every HTTP answer and every
WebSocket status message about a session is built by `session_json`; each boundary
only chooses which of the fields it shows (the SPEC gives each endpoint its own set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway import qris
from gateway.model import AccessDecision, SessionStatus
from gateway.refund_model import Refund

if TYPE_CHECKING:
    from aiohttp.web import UrlDispatcher


class SessionState(Protocol):
    """What every session JSON needs. A `PaymentSession` has it all; the status hub's
    slimmer record has exactly this (so it can show only `STATUS_MESSAGE_FIELDS`)."""

    @property
    def session_id(self) -> str: ...
    @property
    def stream_id(self) -> str: ...
    @property
    def paid_at_ms(self) -> int | None: ...
    @property
    def expires_at_ms(self) -> int: ...
    @property
    def starts_at_ms(self) -> int | None: ...
    @property
    def ended_reason(self) -> str | None: ...
    def status_at(self, now_ms: int) -> SessionStatus: ...


_FIELDS: dict[str, Callable[[Any, int], object]] = {
    "sessionId": lambda session, now_ms: session.session_id,
    "streamId": lambda session, now_ms: session.stream_id,
    "trxId": lambda session, now_ms: session.trx_id,
    "qrString": lambda session, now_ms: session.qr_string,
    "status": lambda session, now_ms: session.status_at(now_ms).value,
    "amount": lambda session, now_ms: session.amount,
    "fee": lambda session, now_ms: session.fee,
    "createdAt": lambda session, now_ms: session.created_at_ms,
    "paidAt": lambda session, now_ms: session.paid_at_ms,
    "startsAt": lambda session, now_ms: session.starts_at_ms,
    "renews": lambda session, now_ms: session.renews,
    "expiresAt": lambda session, now_ms: session.expires_at_ms,
    "remainingTime": lambda session, now_ms: max(0, session.expires_at_ms - now_ms),
    "endedReason": lambda session, now_ms: session.ended_reason,
}

# A session in a list or after an operator's action (user-sessions, revoke).
STATUS_FIELDS = ("sessionId", "streamId", "trxId", "status", "amount", "createdAt",
                 "paidAt", "startsAt", "expiresAt", "remainingTime", "renews")
# POST /api/generate-qris (`qrCode`, the image URL, and `qrCard`, the saveable card's,
# are the handler's to give).
QR_FIELDS = ("sessionId", "trxId", "qrString", "qrCode", "qrCard", "amount", "fee",
             "streamId", "status", "expiresAt", "remainingTime", "merchantName", "nmid")
# GET /api/payment-callback, the seed's status poll.
POLL_FIELDS = ("status", "sessionId", "trxId", "remainingTime", "paidAt", "expiresAt")
# The WebSocket's status message (after its "type").
STATUS_MESSAGE_FIELDS = ("sessionId", "streamId", "status", "paidAt", "startsAt",
                         "expiresAt", "remainingTime", "endedReason")


def session_json(session: SessionState, now_ms: int, fields: Sequence[str] = STATUS_FIELDS,
                 **given: object) -> dict[str, object]:
    """The session's `fields`, in that order, as of `now_ms` (status and remaining time
    are exact at that moment, rule 5). `given` supplies fields only the caller knows."""
    return {name: given[name] if name in given else _FIELDS[name](session, now_ms)
            for name in fields}


def ended_json(ended_reason: str, session_id: str, refunds: Sequence[Refund],
               cancel_reason: str | None) -> dict[str, Any]:
    """Why a viewer's ticket stopped before its time, added to check-access's "no
    access" answer: `endedReason` (`revoked`, `refunded`, `cancelled`), where each refund
    of it stands, and the organiser's reason for a cancelled show."""
    data: dict[str, Any] = {
        "endedReason": ended_reason,
        "endedSessionId": session_id,
        "refunds": [{"amount": refund.amount, "status": refund.status.value}
                    for refund in refunds],
    }
    if cancel_reason:
        data["cancelReason"] = cancel_reason
    return data


def access_json(decision: AccessDecision) -> dict[str, Any]:
    """check-access's answer (also the watch page's starting point)."""
    data: dict[str, Any] = {
        "hasAccess": decision.has_access,
        "streamId": decision.stream_id,
        "sessionId": decision.session.session_id if decision.session else None,
        "remainingTime": decision.remaining_ms,
    }
    if decision.starts_in_ms is not None and decision.session is not None:
        # A paid ticket whose window has not opened: when it does.
        data |= {"startsAt": decision.session.starts_at_ms, "startsIn": decision.starts_in_ms}
    if decision.next_session is not None and decision.session is not None:
        following = decision.next_session
        # The paid next window: access runs on, without a gap, until it ends.
        current_ends_in_ms = decision.remaining_ms
        data["next"] = {"sessionId": following.session_id,
                        "startsAt": following.starts_at_ms,
                        "expiresAt": following.expires_at_ms,
                        "remainingTime": current_ends_in_ms + following.expires_at_ms
                        - decision.session.expires_at_ms}
    return data


def qr_json(session: Any, now_ms: int, router: UrlDispatcher) -> dict[str, Any]:
    """The QR answer (201/200 of generate-qris, and the WebSocket's "qr" message to a
    buyer who waited in line): `QR_FIELDS`, the image's and the card's URLs, and what
    payers compare with their e-wallet's screen before they confirm."""
    payload = qris.parse(session.qr_string)
    qr_url = router["qr-png"].url_for(session_id=session.session_id)
    card_url = router["qr-card"].url_for(session_id=session.session_id)
    return session_json(session, now_ms, QR_FIELDS, qrCode=str(qr_url),
                        qrCard=str(card_url), merchantName=payload.merchant_name,
                        nmid=payload.nmid)
