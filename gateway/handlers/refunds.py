"""Money back, for operators (API key; the console's buttons do the same):
POST /api/refunds, GET /api/refunds, POST /api/streams/{streamId}/cancel."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.errors import InvalidRequest
from gateway.handlers.common import (
    ok,
    path_value,
    query_int,
    query_value,
    read_json,
    require_operator,
)
from gateway.ids import STREAM_ID, TRX_ID
from gateway.keys import REFUNDS
from gateway.refund_model import Refund, RefundStatus

Reason = Annotated[str, Meta(min_length=1, max_length=255)]


class RefundBody(msgspec.Struct, rename="camel"):
    trx_id: Annotated[str, Meta(pattern=f"^{TRX_ID.pattern}$")]
    reason: Reason
    amount: Annotated[int, Meta(ge=1, le=10_000_000_000)] | None = None


class CancelBody(msgspec.Struct):
    reason: Reason


def refund_json(refund: Refund) -> dict[str, Any]:
    return {"refundId": refund.refund_id, "trxId": refund.trx_id, "amount": refund.amount,
            "status": refund.status.value, "provider": refund.provider,
            "number": refund.number, "reason": refund.reason,
            "requestedAt": refund.requested_at_ms, "updatedAt": refund.updated_at_ms,
            "requestedBy": refund.requested_by, "sessionId": refund.session_id,
            "streamId": refund.stream_id, "providerRefundId": refund.provider_refund_id,
            "failureCode": refund.failure_code, "byHand": refund.by_hand}


async def request_refund(request: web.Request) -> web.Response:
    """202: written and asked for; `status` says where it stands (requested, succeeded,
    failed, or manual: a person's task)."""
    require_operator(request)
    body = await read_json(request, RefundBody)
    refund = await request.app[REFUNDS].request(body.trx_id, body.amount, body.reason, "api")
    return ok(refund_json(refund), status=202)


async def list_refunds(request: web.Request) -> web.Response:
    require_operator(request)
    status_text = request.query.get("status") or None
    if status_text is not None and status_text not in {s.value for s in RefundStatus}:
        raise InvalidRequest(detail="status must be requested, succeeded, failed or manual",
                             field="status")
    trx_id = query_value(request, "trxId", TRX_ID)
    limit = query_int(request, "limit", 1, 1000, default=100)
    refunds = await request.app[REFUNDS].listing(
        RefundStatus(status_text) if status_text else None, trx_id, limit)
    return ok({"refunds": [refund_json(refund) for refund in refunds]})


async def cancel_stream(request: web.Request) -> web.Response:
    """202: the show is cancelled (nothing more sold) and every paid ticket's refund is
    written, its access ended; the provider is asked in the background."""
    require_operator(request)
    stream_id = path_value(request, "stream_id", STREAM_ID)
    body = await read_json(request, CancelBody)
    cancellation, refunds = await request.app[REFUNDS].cancel_show(stream_id, body.reason,
                                                                   "api")
    return ok({"streamId": stream_id, "status": "cancelled", "reason": cancellation.reason,
               "cancelledAt": cancellation.cancelled_at_ms, "refundsMade": refunds},
              status=202)
