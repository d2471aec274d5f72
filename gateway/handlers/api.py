"""The JSON API of the SPEC's HTTP table (field names and units kept from the seed:
camelCase, times in ms since the epoch, durations in ms)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.catalog import MAX_PRICE_RUPIAH, POSTER_TYPES, Stream
from gateway.device_model import GrantReport
from gateway.errors import GrantNotFound, InvalidRequest, NotificationRejected, UnknownStream
from gateway.gate.hls_gate import PlaybackGrant
from gateway.handlers.common import (
    access_answer,
    current_viewer,
    ok,
    path_value,
    poster_url,
    query_int,
    query_value,
    read_body,
    read_json,
    request_device,
    require_operator,
    set_gate_cookie,
)
from gateway.identity import acting_user, session_owner
from gateway.ids import DEVICE_ID, SESSION_ID, STREAM_ID, TRX_ID, USER_ID
from gateway.keys import (
    CATALOG,
    CLOCK,
    DEVICES,
    GATE,
    LINE,
    METRICS,
    PROVIDER,
    REPORTS,
    SESSIONS,
    SETTINGS,
    STREAM_HEALTH,
)
from gateway.line import Waiting
from gateway.logs import log_event
from gateway.model import AccessDecision, SessionStatus
from gateway.session_json import (
    POLL_FIELDS,
    STATUS_FIELDS,
    access_json,
    qr_json,
    session_json,
)
from gateway.web_requests import client_address

log = logging.getLogger("gateway.api")

StreamId = Annotated[str, Meta(pattern=f"^{STREAM_ID.pattern}$")]
UserId = Annotated[str, Meta(pattern=f"^{USER_ID.pattern}$")]
DeviceId = Annotated[str, Meta(pattern=f"^{DEVICE_ID.pattern}$")]
Rupiah = Annotated[int, Meta(gt=0, le=MAX_PRICE_RUPIAH)]


class GenerateQrisBody(msgspec.Struct, rename="camel"):
    stream_id: StreamId
    amount: Rupiah | None = None
    user_id: UserId | None = None


class UserSessionBody(msgspec.Struct, rename="camel"):
    stream_id: StreamId
    user_id: UserId | None = None


def stream_json(request: web.Request, stream: Stream) -> dict[str, Any]:
    """A catalog entry as the public sees it: never its origin."""
    health = request.app[STREAM_HEALTH]
    settings = request.app[SETTINGS]
    return {
        "id": stream.stream_id,
        "title": stream.title,
        "price": stream.price,
        "status": health.status(stream).value,
        "startsAt": stream.starts_at_ms,
        "endsAt": stream.ends_at_ms,
        "description": stream.description,
        "poster": poster_url(request, stream),
        "accessSeconds": stream.access_seconds_or(settings.access_seconds),
    }


async def list_streams(request: web.Request) -> web.Response:
    return ok({"streams": [stream_json(request, stream) for stream in request.app[CATALOG]]})


async def poster(request: web.Request) -> web.FileResponse:
    stream = request.app[CATALOG].get(request.match_info["stream_id"])
    if stream is None or stream.poster_file is None:
        raise UnknownStream()
    return web.FileResponse(stream.poster_file, headers={
        "Content-Type": POSTER_TYPES[stream.poster_file.suffix.lower()],
        "Cache-Control": "public, max-age=3600"})


async def generate_qris(request: web.Request) -> web.Response:
    body = await read_json(request, GenerateQrisBody)
    user_id = acting_user(current_viewer(request), body.user_id)
    outcome = await request.app[LINE].request_qr(user_id, body.stream_id, body.amount,
                                                 client_address(request))
    if isinstance(outcome, Waiting):  # queued, never refused (SPEC, A crowd)
        return ok(outcome.json(), status=202)
    session, created = outcome
    if created:
        request.app[METRICS].sessions_created.inc()
    return ok(qr_json(session, request.app[CLOCK](), request.app.router),
              status=201 if created else 200)


async def payment_status(request: web.Request) -> web.Response:
    """The seed's status poll, for clients without the WebSocket."""
    session_id = query_value(request, "sessionId", SESSION_ID)
    trx_id = query_value(request, "trxId", TRX_ID)
    if session_id is None and trx_id is None:
        raise InvalidRequest(detail="sessionId or trxId is required", field="sessionId")
    owner = session_owner(current_viewer(request), query_value(request, "userId", USER_ID))
    session = await request.app[SESSIONS].owned_session(
        owner, session_id=session_id, trx_id=trx_id
    )
    return ok(session_json(session, request.app[CLOCK](), POLL_FIELDS))


async def payment_notification(request: web.Request) -> web.Response:
    """The provider's callback. Read raw bytes first: signatures cover the exact body."""
    raw_body = await read_body(request)
    metrics = request.app[METRICS]
    try:
        notification = await request.app[PROVIDER].authenticate(
            request.headers, raw_body, request.app[CLOCK]()
        )
        decision = await request.app[SESSIONS].record_notification(notification)
    except NotificationRejected as rejected:
        reason = str(rejected.params["reason"])
        # One line per refusal, with why: not stored, so this is all the trace there is.
        log_event(log, "callback_refused", level=logging.WARNING, reason=reason,
                  provider=request.app[PROVIDER].name, bodyBytes=len(raw_body))
        metrics.notifications_rejected.labels(reason).inc()
        raise
    metrics.notifications.labels(decision.reason.value, str(decision.applied).lower()).inc()
    # 200 also for duplicates and refusals: the provider must stop retrying, and
    # `applied`/`reason` say what happened.
    data = {"applied": decision.applied, "reason": decision.reason.value,
            "eventId": notification.event_id}
    extra = request.app[PROVIDER].callback_answer_fields
    if not extra:
        return ok(data)
    # What this provider reads to stop retrying (otomatis.vip: "status": true), in the
    # same object as ours.
    return web.Response(body=msgspec.json.encode({"success": True, "data": data, **extra}),
                        content_type="application/json")


async def check_access(request: web.Request) -> web.Response:
    stream_id = query_value(request, "streamId", STREAM_ID, required=True)
    assert stream_id is not None
    session_id = query_value(request, "sessionId", SESSION_ID)
    user_id = acting_user(current_viewer(request), query_value(request, "userId", USER_ID))
    device = request_device(request, query_value(request, "deviceId", DEVICE_ID))
    decision = await request.app[SESSIONS].check_access(user_id, stream_id, session_id)
    if not (decision.has_access and decision.session is not None):
        return ok(await access_answer(request, decision))
    # This device's grant; refused (device_limit) when it is new and the places are taken.
    grant = await request.app[GATE].grant(decision.session, decision.remaining_ms, device,
                                          decision.next_session)
    return _access_response(request, decision, grant)


class WatchHereBody(msgspec.Struct, rename="camel"):
    stream_id: StreamId
    user_id: UserId | None = None
    device_id: DeviceId | None = None


async def watch_here(request: web.Request) -> web.Response:
    """"Watch here instead": the purchase is playing on as many devices as it may, so
    the one that has played longest stops and this device plays. Same answer as
    check-access, with this device's new grant."""
    body = await read_json(request, WatchHereBody)
    user_id = acting_user(current_viewer(request), body.user_id)
    device = request_device(request, body.device_id)
    decision = await request.app[SESSIONS].check_access(user_id, body.stream_id, None)
    if not (decision.has_access and decision.session is not None):
        return ok(await access_answer(request, decision))
    grant = await request.app[GATE].watch_here(decision.session, decision.remaining_ms,
                                                device, decision.next_session)
    return _access_response(request, decision, grant)


def _access_response(request: web.Request, decision: AccessDecision,
                     grant: PlaybackGrant) -> web.Response:
    """Access granted: both playback URLs and the gate cookie, carrying this device's
    grant."""
    response = ok(access_json(decision) | grant.urls)
    set_gate_cookie(request, response, grant)
    return response


GRANT_ID = SESSION_ID  # random URL-safe ids, like session ids


async def list_grants(request: web.Request) -> web.Response:
    """Operator view (API key): a purchase's playback grants and where each plays now."""
    require_operator(request)
    session = await request.app[SESSIONS].owned_session(
        None, session_id=path_value(request, "session_id", SESSION_ID))
    reports = await request.app[DEVICES].grants(session.session_id)
    return ok({"sessionId": session.session_id,
               "maxDevices": request.app[SETTINGS].max_devices,
               "grants": [_grant_json(report) for report in reports]})


async def end_grant(request: web.Request) -> web.Response:
    """Operator action (API key): end one device's grant. Its next playlist or segment
    request is refused; the purchase and its other devices play on."""
    require_operator(request)
    grant_id = path_value(request, "grant_id", GRANT_ID)
    ended = await request.app[DEVICES].end_grant(grant_id, reason="operator")
    if ended is None:
        raise GrantNotFound()
    return ok(_grant_json(GrantReport(ended, ())))


def _grant_json(report: GrantReport) -> dict[str, Any]:
    grant = report.grant
    return {
        "grantId": grant.grant_id,
        "sessionId": grant.session_id,
        "deviceId": grant.device_id,
        "kind": "program" if grant.device_id is not None else "browser",
        "createdAt": grant.created_at_ms,
        "endedAt": grant.ended_at_ms,
        "playing": bool(report.places),
        "places": [{"address": place.address, "firstSeen": place.first_seen_ms,
                    "lastSeen": place.last_seen_ms} for place in report.places],
    }


class RevokeBody(msgspec.Struct):
    reason: Annotated[str, Meta(min_length=1, max_length=200)] = "revoked by operator"


async def revoke_session(request: web.Request) -> web.Response:
    """Operator action (API key): end a paid session now, e.g. after a refund. The gate
    refuses its next playlist or segment request; its viewer's page hears `expired`."""
    require_operator(request)
    session_id = path_value(request, "session_id", SESSION_ID)
    body = await read_json(request, RevokeBody, allow_empty=True)
    session = await request.app[SESSIONS].revoke(session_id, body.reason)
    return ok(session_json(session, request.app[CLOCK]()))


async def list_notifications(request: web.Request) -> web.Response:
    """Operator view (API key) of the notification ledger, newest first: every
    authentic notification, what it did, and why (e.g. refunds due)."""
    require_operator(request)
    trx_id = query_value(request, "trxId", TRX_ID)
    limit = query_int(request, "limit", 1, 1000, default=100)
    ledger = await request.app[REPORTS].notifications(trx_id, limit)
    return ok({"notifications": [{
        "provider": entry.notification.provider,
        "eventId": entry.notification.event_id,
        "trxId": entry.notification.trx_id,
        "sessionId": entry.session_id,
        "amount": entry.notification.amount,
        "fee": entry.notification.fee,
        "reportedStatus": entry.notification.reported_status,
        "paidAt": entry.notification.paid_at_ms,
        "receivedAt": entry.notification.received_at_ms,
        "applied": entry.applied,
        "reason": entry.reason,
        "rawBody": entry.notification.raw_body,
    } for entry in ledger]})


async def list_payments(request: web.Request) -> web.Response:
    """Operator view (API key) of payment sessions, newest first, by status and stream:
    the sales ledger, and the pending ones to look into."""
    require_operator(request)
    raw_status = request.query.get("status")
    if raw_status is not None and raw_status not in SessionStatus.__members__.values():
        raise InvalidRequest(detail="status must be pending, paid or expired")
    stream_id = query_value(request, "streamId", STREAM_ID)
    limit = query_int(request, "limit", 1, 1000, default=100)
    found = await request.app[REPORTS].payments(
        SessionStatus(raw_status) if raw_status else None, stream_id, limit)
    now_ms = request.app[CLOCK]()
    return ok({"payments": [
        session_json(session, now_ms, (*STATUS_FIELDS, "fee", "userId", "provider"),
                     userId=session.user_id, provider=session.provider)
        for session in found
    ]})


async def list_user_sessions(request: web.Request) -> web.Response:
    user_id = acting_user(current_viewer(request), query_value(request, "userId", USER_ID))
    sessions = await request.app[SESSIONS].active_sessions(user_id)
    now_ms = request.app[CLOCK]()
    return ok({
        "activeSessions": [session_json(session, now_ms) for session in sessions],
        "totalActive": len(sessions),
    })


async def user_session_for_stream(request: web.Request) -> web.Response:
    body = await read_json(request, UserSessionBody)
    user_id = acting_user(current_viewer(request), body.user_id)
    domain = request.app[SESSIONS]
    decision = await domain.check_access(user_id, body.stream_id, None)
    sessions = await domain.active_sessions(user_id)
    return ok({
        "hasAccess": decision.has_access,
        "streamId": body.stream_id,
        "sessionId": decision.session.session_id if decision.session else None,
        "remainingTime": decision.remaining_ms,
        "totalActive": len(sessions),
    })
