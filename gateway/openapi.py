"""The HTTP API as an OpenAPI 3.1 document (GET /api/openapi.json), in one place.

Each endpoint is one entry of `_operations()`: its parameters, body, answers and the
error codes each answer may carry. `tests/test_openapi.py` checks that this document and
the route table agree (every route described, nothing described that isn't routed), and
`tests/test_fuzz.py` drives the real app from it and fails on any answer that breaks it.
Adding an endpoint: add its route, add its entry here; the tests say if one is missing.
"""

from __future__ import annotations

from typing import Any

from gateway.catalog import MAX_PRICE_RUPIAH, POSTER_TYPES
from gateway.errors import GatewayError
from gateway.i18n import error_message
from gateway.identity import VIEWER_COOKIE
from gateway.ids import DEVICE_ID, SESSION_ID, STREAM_ID, TRX_ID, USER_ID
from gateway.model import NotificationReason
from gateway.refund_model import RefundStatus
from gateway.stream_health import StreamStatus

Schema = dict[str, Any]

# Codes an answer may carry beyond the domain's (GatewayError subclasses): HTTP-level
# refusals made by aiohttp, and the last resort.
_HTTP_CODES = ("not_found", "method_not_allowed", "payload_too_large", "expectation_failed",
               "http_400", "internal_error")


def error_codes() -> list[str]:
    """Every stable machine code an error answer may carry."""
    codes: set[str] = set(_HTTP_CODES)
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not GatewayError:
            codes.add(cls.code)
    return sorted(codes)


def _pattern(regex: str) -> Schema:
    return {"type": "string", "pattern": f"^{regex}$"}


def _ok(data: Schema, description: str = "Done.", *,
        beside: dict[str, Schema] | None = None) -> Schema:
    """A success answer; `beside`: optional fields next to `success` and `data`."""
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": ["success", "data"], "additionalProperties": False,
        "properties": {"success": {"const": True}, "data": data, **(beside or {})}}}}}


def _obj(required: list[str], optional: dict[str, Schema] | None = None,
         **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "additionalProperties": False,
            "properties": {**properties, **(optional or {})}}


_ERROR_TEXT = {
    400: "Malformed or invalid input (`invalid_request`, `amount_mismatch`, ...).",
    401: "A credential was presented and is not valid, or a callback is not authentic.",
    403: "Not yours (`forbidden`), or no paid access (`no_access`).",
    404: "No such stream, session, media or route.",
    405: "Method not allowed.",
    408: "The request body did not arrive in time (`request_timeout`).",
    409: "The viewer already has access (`already_has_access`).",
    413: "The body is larger than GATEWAY_MAX_BODY_BYTES (`payload_too_large`).",
    429: "Too many payment sessions from this address or viewer (`rate_limited`); see "
         "Retry-After.",
    502: "The provider or the origin failed.",
    503: "The store is unavailable (`store_unavailable`); see Retry-After.",
    504: "The origin did not answer in time (`upstream_timeout`).",
}
# The code each status's example shows (Swagger UI would otherwise show the schema's
# first code, `already_has_access`, under every status), with its real English text.
_EXAMPLE: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("invalid_request", {"field": "streamId"}), 401: ("unauthenticated", {}),
    403: ("no_access", {}), 404: ("unknown_stream", {}), 405: ("method_not_allowed", {}),
    408: ("request_timeout", {}), 409: ("already_has_access", {}),
    413: ("payload_too_large", {}), 429: ("rate_limited", {"retry_after_s": 60}),
    502: ("provider_unavailable", {}), 503: ("store_unavailable", {}),
    504: ("upstream_timeout", {}),
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before asking again.",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    # Every endpoint may meet a body it cannot read, a store in trouble, or a method it
    # does not have: those are always listed.
    answers: dict[str, Schema] = {}
    for status in sorted({*statuses, 405, 503}):
        code, params = _EXAMPLE[status]
        answer: Schema = {"description": _ERROR_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                 "example": {"success": False, "code": code,
                                             "error": error_message("en", code, params)}}}}
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        answers[str(status)] = answer
    return answers


def _query(name: str, schema: Schema, description: str, *, required: bool = False
           ) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def _path(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


STREAM = _pattern(STREAM_ID.pattern)
SESSION = _pattern(SESSION_ID.pattern)
TRX = _pattern(TRX_ID.pattern)
USER = _pattern(USER_ID.pattern)
MS = {"type": "integer", "minimum": 0, "description": "ms since the epoch"}
MS_OR_NULL = {"type": ["integer", "null"], "minimum": 0, "description": "ms since the epoch"}
DURATION_MS = {"type": "integer", "minimum": 0, "description": "ms"}
STATUS = {"type": "string", "enum": ["pending", "paid", "expired"]}
USER_PARAM = _query("userId", USER, "Must be the caller's own; any, with the API key.")
VIEWER_SECURITY: list[Schema] = [{"ApiKey": []}, {"PlatformToken": []}, {"ViewerCookie": []}]
OPERATOR_SECURITY: list[Schema] = [{"ApiKey": []}, {"OperatorBearer": []}]

SESSION_STATUS = _obj(
    ["sessionId", "streamId", "trxId", "status", "amount", "createdAt", "paidAt",
     "expiresAt", "remainingTime"],
    sessionId=SESSION, streamId=STREAM, trxId=TRX, status=STATUS,
    amount={"type": "integer"}, createdAt=MS, paidAt=MS_OR_NULL, expiresAt=MS,
    remainingTime=DURATION_MS)
ACCESS = _obj(
    ["hasAccess", "streamId", "sessionId", "remainingTime"],
    {"playbackUrl": {"type": "string"}, "tokenPlaybackUrl": {"type": "string"},
     # No access because the ticket was ended early, inside the window it bought.
     "endedReason": {"type": "string", "enum": ["revoked", "refunded", "cancelled"],
                     "description": "why the viewer's ticket stopped before its time"},
     "endedSessionId": SESSION,
     "refunds": {"type": "array", "description": "the ended ticket's refunds",
                 "items": _obj(["amount", "status"], amount={"type": "integer"},
                               status={"type": "string", "enum": [
                                   "requested", "succeeded", "failed", "manual"]})},
     "cancelReason": {"type": "string", "description": "the organiser's, for a "
                      "cancelled show"}},
    hasAccess={"type": "boolean"}, streamId=STREAM,
    sessionId={"type": ["string", "null"]}, remainingTime=DURATION_MS)
DEVICE = _pattern(DEVICE_ID.pattern)
GRANT = _obj(
    ["grantId", "sessionId", "deviceId", "kind", "createdAt", "endedAt", "playing", "places"],
    grantId=SESSION, sessionId=SESSION, deviceId={"type": ["string", "null"]},
    kind={"type": "string", "enum": ["browser", "program"]}, createdAt=MS,
    endedAt=MS_OR_NULL, playing={"type": "boolean"},
    places={"type": "array", "items": _obj(["address", "firstSeen", "lastSeen"],
                                           address={"type": "string"}, firstSeen=MS,
                                           lastSeen=MS)})
REFUND_STATUS = {"type": "string", "enum": [status.value for status in RefundStatus]}
REFUND = _obj(
    ["refundId", "trxId", "amount", "status", "provider", "number", "reason", "requestedAt",
     "updatedAt", "requestedBy", "sessionId", "streamId", "providerRefundId",
     "failureCode", "byHand"],
    refundId={"type": "string"}, trxId=TRX, amount={"type": "integer", "minimum": 1},
    status=REFUND_STATUS, provider={"type": "string"}, number={"type": "integer"},
    reason={"type": "string"}, requestedAt=MS, updatedAt=MS, requestedBy={"type": "string"},
    sessionId={"type": ["string", "null"]}, streamId={"type": ["string", "null"]},
    providerRefundId={"type": ["string", "null"]}, failureCode={"type": ["string", "null"]},
    byHand={"type": "boolean"})
MEDIA = {"description": "The playlist or segment from the stream's origin.", "content": {
    media_type: {"schema": {"type": "string", "format": "binary"}}
    for media_type in ("application/vnd.apple.mpegurl", "video/mp2t", "video/iso.segment",
                       "video/mp4", "audio/mp4", "audio/aac", "audio/mpeg", "text/vtt",
                       "application/octet-stream")}}


def _operations(simulator_enabled: bool) -> dict[str, dict[str, Schema]]:
    """path -> method -> operation. One entry per route of gateway/routes.py."""
    paths: dict[str, dict[str, Schema]] = {
        "/api/streams": {"get": {
            "operationId": "listStreams", "summary": "The catalog (never the origins).",
            "responses": {"200": _ok(_obj(["streams"], streams={"type": "array", "items": _obj(
                ["id", "title", "price", "status", "startsAt", "endsAt", "description",
                 "poster", "accessSeconds"], id=STREAM, title={"type": "string"},
                price={"type": "integer", "minimum": 1},
                status={"type": "string", "enum": [status.value for status in StreamStatus]},
                startsAt=MS_OR_NULL, endsAt=MS_OR_NULL,
                description={"type": ["string", "null"]},
                poster={"type": ["string", "null"], "description": "an image URL"},
                accessSeconds={"type": "integer", "minimum": 1})})), **_errors()}}},
        "/posters/{streamId}": {"get": {
            "operationId": "poster", "summary": "A stream's poster image, when kept here.",
            "parameters": [_path("streamId", STREAM, "The stream.")],
            "responses": {"200": {"description": "The image.", "content": {
                media_type: {"schema": {"type": "string", "format": "binary"}}
                for media_type in sorted(set(POSTER_TYPES.values()))}},
                **_errors(404)}}},
        "/api/generate-qris": {"post": {
            "operationId": "generateQris",
            "summary": "A QRIS for the stream: new (201), the pending one (200), or a "
                       "place in line (202).",
            "description": "Past the provider's pace (GATEWAY_PROVIDER_RATE_PER_MINUTE, "
                           "or its own 429) or the address's share "
                           "(GATEWAY_QR_RATE_PER_ADDRESS), the buyer is queued, never "
                           "refused: 202 with the place and an ETA. Asking again keeps the "
                           "place. `/ws?streamId=` then tells the place and pushes the QR "
                           "(`{type: qr, ...}`, the 201 body) when it is made. Only one "
                           "viewer asking too often is refused (429).",
            "security": VIEWER_SECURITY,
            "requestBody": _json_body(_obj(
                ["streamId"], streamId=STREAM,
                amount={"type": "integer", "minimum": 1, "maximum": MAX_PRICE_RUPIAH,
                        "description": "Optional; must equal the catalog price."},
                userId=USER)),
            "responses": {
                "201": _ok(_QR, "A new payment session."),
                "200": _ok(_QR, "The viewer's pending session for this stream."),
                "202": _ok(_PLACE, "Queued: the viewer's place in line for a QR."),
                **_errors(400, 401, 403, 404, 408, 409, 413, 429, 502, 503)}}},
        "/api/payment-callback": {
            "get": {
                "operationId": "paymentStatus", "summary": "The seed's status poll.",
                "security": VIEWER_SECURITY,
                "parameters": [_query("sessionId", SESSION, "This or trxId is required."),
                               _query("trxId", TRX, "This or sessionId is required."),
                               USER_PARAM],
                "responses": {"200": _ok(_obj(
                    ["status", "sessionId", "trxId", "remainingTime", "paidAt", "expiresAt"],
                    status=STATUS, sessionId=SESSION, trxId=TRX, remainingTime=DURATION_MS,
                    paidAt=MS_OR_NULL, expiresAt=MS)), **_errors(400, 401, 403, 404)}},
            "post": {
                "operationId": "paymentNotification",
                "summary": "The provider's signed notification.",
                "description": "Signed as `X-Gateway-Signature: t=<unix s>,v1=<hex HMAC-SHA256"
                               "(secret, \"<t>.<raw body>\")>`. Authentic ones are answered "
                               "200, applied or not (`reason` says why), also when the same "
                               "delivery comes again (`duplicate_event`). With a real "
                               "provider the body and its authentication are that "
                               "provider's own (README, Providers); otomatis.vip's answer "
                               "also carries `\"status\": true`.",
                "parameters": [{"name": "X-Gateway-Signature", "in": "header",
                                "required": False, "schema": {"type": "string"}}],
                "requestBody": _json_body(_obj(
                    ["eventId", "trxId", "amount", "status"], {"paidAt": MS},
                    eventId={"type": "string"}, trxId=TRX, amount={"type": "integer"},
                    status={"type": "string"})),
                "responses": {"200": _ok(_obj(
                    ["applied", "reason", "eventId"], applied={"type": "boolean"},
                    # REPLAYED is answered as a duplicate_event (sessions.py).
                    reason={"type": "string", "enum": [
                        reason.value for reason in NotificationReason
                        if reason is not NotificationReason.REPLAYED]},
                    eventId={"type": "string"}),
                    beside={"status": {"const": True}}), **_errors(400, 401, 408, 413)}}},
        "/api/check-access": {"get": {
            "operationId": "checkAccess",
            "summary": "Whether the caller may watch; sets the gate cookie when so.",
            "security": VIEWER_SECURITY,
            "parameters": [_query("streamId", STREAM, "The stream.", required=True),
                           _query("sessionId", SESSION, "A session of the caller's."),
                           _query("deviceId", DEVICE, "API key or platform token callers: "
                                  "the device asking (one grant per device)."),
                           USER_PARAM],
            "responses": {"200": _ok(ACCESS), **_errors(400, 401, 403, 404)}}},
        "/api/user-sessions": {
            "get": {
                "operationId": "listUserSessions", "summary": "The caller's active sessions.",
                "security": VIEWER_SECURITY, "parameters": [USER_PARAM],
                "responses": {"200": _ok(_obj(
                    ["activeSessions", "totalActive"],
                    activeSessions={"type": "array", "items": SESSION_STATUS},
                    totalActive={"type": "integer", "minimum": 0})),
                    **_errors(400, 401, 403)}},
            "post": {
                "operationId": "userSessionForStream",
                "summary": "The caller's access to one stream, and how many are active.",
                "security": VIEWER_SECURITY,
                "requestBody": _json_body(_obj(["streamId"], streamId=STREAM, userId=USER)),
                "responses": {"200": _ok(_obj(
                    ["hasAccess", "streamId", "sessionId", "remainingTime", "totalActive"],
                    hasAccess={"type": "boolean"}, streamId=STREAM,
                    sessionId={"type": ["string", "null"]}, remainingTime=DURATION_MS,
                    totalActive={"type": "integer", "minimum": 0})),
                    **_errors(400, 401, 403, 404, 408, 413)}}},
        "/api/qr/{sessionId}.png": {"get": {
            "operationId": "qrImage", "summary": "The session's QRIS, drawn here.",
            "security": VIEWER_SECURITY,
            "parameters": [_path("sessionId", SESSION, "The session."), USER_PARAM],
            "responses": {"200": {"description": "A PNG.", "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors(400, 401, 403, 404)}}},
        "/api/qr/{sessionId}/card.png": {"get": {
            "operationId": "qrCard",
            "summary": "The session's QRIS on a card to save: QRIS mark, merchant, NMID, "
                       "amount, payment deadline (in the Accept-Language language).",
            "security": VIEWER_SECURITY,
            "parameters": [_path("sessionId", SESSION, "The session."), USER_PARAM],
            "responses": {"200": {"description": "A PNG.", "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors(400, 401, 403, 404)}}},
        "/api/sessions/{sessionId}/revoke": {"post": {
            "operationId": "revokeSession",
            "summary": "Operator: end a paid session now (refund, abuse).",
            "security": OPERATOR_SECURITY,
            "parameters": [_path("sessionId", SESSION, "The session.")],
            "requestBody": _json_body(_obj([], reason={"type": "string", "minLength": 1,
                                                       "maxLength": 200}), required=False),
            "responses": {"200": _ok(SESSION_STATUS), **_errors(400, 401, 404, 408, 413)}}},
        "/api/watch-here": {"post": {
            "operationId": "watchHere",
            "summary": "Play here: the device that has played longest stops instead.",
            "security": VIEWER_SECURITY,
            "requestBody": _json_body(_obj(["streamId"], streamId=STREAM, userId=USER,
                                           deviceId=DEVICE)),
            "responses": {"200": _ok(ACCESS), **_errors(400, 401, 403, 404, 408, 413)}}},
        "/api/sessions/{sessionId}/grants": {"get": {
            "operationId": "listGrants",
            "summary": "Operator: a purchase's playback grants and where each plays.",
            "security": OPERATOR_SECURITY,
            "parameters": [_path("sessionId", SESSION, "The session.")],
            "responses": {"200": _ok(_obj(
                ["sessionId", "maxDevices", "grants"], sessionId=SESSION,
                maxDevices={"type": "integer", "minimum": 0},
                grants={"type": "array", "items": GRANT})), **_errors(400, 401, 404)}}},
        "/api/grants/{grantId}/end": {"post": {
            "operationId": "endGrant",
            "summary": "Operator: end one device's grant; the purchase plays on elsewhere.",
            "security": OPERATOR_SECURITY,
            "parameters": [_path("grantId", SESSION, "The grant.")],
            "responses": {"200": _ok(GRANT), **_errors(400, 401, 404)}}},
        "/api/payments": {"get": {
            "operationId": "listPayments",
            "summary": "Operator: payment sessions, newest first.",
            "security": OPERATOR_SECURITY,
            "parameters": [
                _query("status", STATUS, "Only sessions in this status."),
                _query("streamId", STREAM, "Only this stream's."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                       "At most this many (default 100).")],
            "responses": {"200": _ok(_obj(["payments"], payments={
                "type": "array", "items": {"type": "object"}})), **_errors(400, 401)}}},
        "/api/notifications": {"get": {
            "operationId": "listNotifications",
            "summary": "Operator: the notification ledger, newest first.",
            "security": OPERATOR_SECURITY,
            "parameters": [_query("trxId", TRX, "Only this transaction's."),
                           _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                                  "At most this many (default 100).")],
            "responses": {"200": _ok(_obj(["notifications"], notifications={
                "type": "array", "items": {"type": "object"}})), **_errors(400, 401)}}},
        "/api/refunds": {
            "post": {
                "operationId": "requestRefund",
                "summary": "Operator: give (part of) a payment back through its provider.",
                "description": "Written with its idempotency key before the provider is "
                               "asked, so never paid out twice; a ticket's access ends at "
                               "once. `status`: requested (the provider's answer or "
                               "notification is to come), succeeded, failed, or manual "
                               "(no refund API: a person's task, closed in the console).",
                "security": OPERATOR_SECURITY,
                "requestBody": _json_body(_obj(
                    ["trxId", "reason"], trxId=TRX,
                    reason={"type": "string", "minLength": 1, "maxLength": 255},
                    amount={"type": "integer", "minimum": 1,
                            "description": "Default: all that remains of the payment."})),
                "responses": {"202": _ok(REFUND), **_errors(400, 401, 404, 408, 409, 413)}},
            "get": {
                "operationId": "listRefunds",
                "summary": "Operator: refunds, newest first.",
                "security": OPERATOR_SECURITY,
                "parameters": [
                    _query("status", REFUND_STATUS, "Only refunds in this status."),
                    _query("trxId", TRX, "Only this payment's."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                           "At most this many (default 100).")],
                "responses": {"200": _ok(_obj(["refunds"], refunds={
                    "type": "array", "items": REFUND})), **_errors(400, 401)}}},
        "/api/streams/{streamId}/cancel": {"post": {
            "operationId": "cancelStream",
            "summary": "Operator: cancel a show: nothing more is sold, every ticket refunded.",
            "security": OPERATOR_SECURITY,
            "parameters": [_path("streamId", STREAM, "The stream.")],
            "requestBody": _json_body(_obj(["reason"], reason={
                "type": "string", "minLength": 1, "maxLength": 255})),
            "responses": {"202": _ok(_obj(
                ["streamId", "status", "reason", "cancelledAt", "refundsMade"],
                streamId=STREAM, status={"const": "cancelled"}, reason={"type": "string"},
                cancelledAt=MS, refundsMade={"type": "integer", "minimum": 0})),
                **_errors(400, 401, 404, 408, 413)}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                "application/json": {"schema": {"type": "object"}}}}, **_errors()}}},
        "/api/docs": {"get": {
            "operationId": "apiDocs", "summary": "This document, for people (Swagger UI).",
            "responses": {"200": {"description": "A page.", "content": {
                "text/html": {"schema": {"type": "string"}}}}, **_errors()}}},
        "/ws": {"get": {
            "operationId": "statusSocket",
            "summary": "WebSocket of a session's status (101 Switching Protocols).",
            "description": "Sends the state at once, then "
                           "`{type: status, sessionId, streamId, status, paidAt, startsAt, "
                           "expiresAt, remainingTime, endedReason}` on every change "
                           "(`endedReason`: revoked, refunded or cancelled when access "
                           "ended early, else null). Another viewer's session: an "
                           "error message and close code 4403; unknown: 4404. With "
                           "`streamId` instead of `sessionId`: the caller's place in line "
                           "for that stream, `{type: queue, streamId, position, "
                           "etaSeconds, etaAtLeast}` again every 2 s near the front, less often "
                           "the longer the wait (a twentieth of `etaSeconds`, at most "
                           "every 10 s), then "
                           "`{type: qr, ...}` (generate-qris's 201 body) once the QR is "
                           "made; 4404 when the caller is not in line.",
            "security": VIEWER_SECURITY,
            "parameters": [_query("sessionId", SESSION, "The session to watch."),
                           _query("streamId", STREAM, "Instead of sessionId: the caller's "
                                  "place in line for this stream.")],
            "responses": {"101": {"description": "Switching to the WebSocket protocol."},
                          **_errors(400, 401, 403, 429)}}},
        "/hls/{streamId}/{path}": {"get": _hls_operation("hls", [])},
        "/hls/{streamId}/t/{token}/{path}": {"get": _hls_operation(
            "hlsToken", [_path("token", {"type": "string"}, "The access token.")])},
        "/gate/auth": {"get": {
            "operationId": "gateAuth",
            "summary": "nginx auth_request: may this gate request be served?",
            "description": "Never touches the store. 204: serve it, for `X-Accel-Expires` "
                           "seconds at most; 403: refused, with the gate's code in "
                           "`X-Gate-Code` (any refusal, also a malformed URI, is a 403: "
                           "nginx turns any other status into a 500).",
            "security": [{"GateCookie": []}, {}],
            "parameters": [{"name": "X-Original-URI", "in": "header", "required": False,
                            "schema": {"type": "string"},
                            "description": "The viewer's /hls/... URI, as nginx saw it."}],
            "responses": {"204": {"description": "Serve it.", "headers": {
                "X-Accel-Expires": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}},
                **_errors(403)}}},
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Liveness: the process answers.",
            "responses": {"200": _ok(_obj(["status"], status={"const": "ok"})),
                          **_errors()}}},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Readiness: the store answers too.",
            "responses": {"200": _ok(_obj(["status"], status={"const": "ready"})),
                          **_errors()}}},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Operator: Prometheus metrics.",
            "security": OPERATOR_SECURITY,
            "responses": {"200": {"description": "Prometheus text format.", "content": {
                "text/plain": {"schema": {"type": "string"}}}}, **_errors(401)}}},
    }
    if simulator_enabled:
        paths["/simulator/pay/{trxId}"] = {"post": {
            "operationId": "simulatorPay",
            "summary": "Simulator only: pay, and deliver the signed notification.",
            "security": VIEWER_SECURITY,
            "parameters": [_path("trxId", TRX, "The transaction.")],
            "requestBody": _json_body(_obj([], amount={
                "type": "integer", "minimum": 1, "maximum": MAX_PRICE_RUPIAH}), required=False),
            "responses": {"200": _ok(_obj(
                ["trxId", "sessionId", "callbackStatus", "applied", "reason"],
                trxId=TRX, sessionId=SESSION, callbackStatus={"type": "integer"},
                applied={"type": "boolean"}, reason={"type": ["string", "null"]})),
                **_errors(400, 401, 403, 404, 408, 413, 502)}}}
    return paths


_QR = _obj(
    ["sessionId", "trxId", "qrString", "qrCode", "amount", "fee", "streamId", "status",
     "expiresAt", "remainingTime"],
    sessionId=SESSION, trxId=TRX, qrString={"type": "string"},
    qrCode={"type": "string", "description": "URL of the QR image"},
    qrCard={"type": "string", "description": "URL of the QR card to save: the code with "
            "the QRIS mark, merchant, NMID, amount and payment deadline"},
    amount={"type": "integer", "minimum": 1}, fee={"type": "integer", "minimum": 0},
    streamId=STREAM, status=STATUS, expiresAt=MS, remainingTime=DURATION_MS,
    merchantName={"type": ["string", "null"], "description": "as the payer's e-wallet shows it"},
    nmid={"type": ["string", "null"], "description": "the merchant's QRIS NMID"})


_PLACE = _obj(
    ["queued", "streamId", "position", "etaSeconds", "etaAtLeast"],
    queued={"const": True}, streamId=STREAM,
    position={"type": "integer", "minimum": 1, "description": "1: next"},
    etaSeconds={"type": "integer", "minimum": 0,
                "description": "about when the QR will be made, from now"},
    etaAtLeast={"type": "boolean",
                "description": "true: the place is behind others from the caller's own "
                               "address, and buyers arriving later from other addresses "
                               "may still go ahead (the line is fair by address), so "
                               "etaSeconds is the least wait; false: nobody can come in "
                               "ahead any more, and etaSeconds is an estimate"})


def _hls_operation(operation_id: str, extra: list[Schema]) -> Schema:
    return {
        "operationId": operation_id,
        "summary": "The gate: a playlist or segment, with a valid access token only.",
        "security": [{"GateCookie": []}] if not extra else [],
        "parameters": [_path("streamId", STREAM, "The stream."), *extra,
                       _path("path", {"type": "string"}, "The media path under the origin."),
                       {"name": "Range", "in": "header", "required": False,
                        "schema": {"type": "string"},
                        "description": "One byte range; anything else is ignored."}],
        "responses": {"200": MEDIA, "206": {**MEDIA, "description": "The range asked for."},
                      "416": {"description": "The range is outside the object."},
                      **_errors(403, 404, 502, 504)}}


def _keys_delivery_operations() -> dict[str, dict[str, Schema]]:
    """GATEWAY_DELIVERY=keys only: public encrypted media, gated keys."""
    stream = _path("streamId", STREAM, "The stream.")
    return {
        "/media/{streamId}/{path}": {"get": {
            "operationId": "keysMedia",
            "summary": "Keys delivery: a playlist or encrypted segment, for anyone.",
            "description": "The stream's playlist under its origin's path (or "
                           "`t/{token}/` and the path, for players without cookies: its "
                           "key URIs then carry the token), rewritten to name each "
                           "segment's key (`#EXT-X-KEY:METHOD=AES-128`), `Cache-Control: "
                           "public, max-age=1`; or a segment or init section at a URL the "
                           "playlist names (`k/...`, `c/...`), `public, max-age=3600, "
                           "immutable`. Query strings are ignored.",
            "parameters": [stream, _path("path", {"type": "string"},
                                         "A playlist's path, or a URL a playlist named."),
                           {"name": "Range", "in": "header", "required": False,
                            "schema": {"type": "string"},
                            "description": "One byte range; anything else is ignored."}],
            "responses": {"200": MEDIA, "206": {**MEDIA, "description": "The range."},
                          "416": {"description": "The range is outside the object."},
                          **_errors(404, 502, 504)}}},
        "/keys/{streamId}/{keyId}": {"get": {
            "operationId": "keysKey",
            "summary": "Keys delivery: a segment key (16 bytes), with access only.",
            "description": "Decided like the gate's media: the `gate` cookie (Path "
                           "`/keys/{streamId}/`), or the path token in "
                           "`/keys/{streamId}/t/{token}/{keyId}`. `Cache-Control: "
                           "private, no-store`.",
            "security": [{"GateCookie": []}, {}],
            "parameters": [stream, _path("keyId", {"type": "string"},
                                         "The key's id, as the playlist names it.")],
            "responses": {"200": {"description": "The key.", "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
                          **_errors(403, 404)}}},
    }


# Swagger UI groups operations by tag: who calls them.
TAGS = {
    "viewer": "What a viewer's browser (or the host platform's server) calls.",
    "provider": "What a payment provider calls.",
    "operator": "What the operator calls, with the API key.",
    "gate": "Media, and nginx's decisions: what players and the edge call.",
}
_TAG_OF = {
    **dict.fromkeys(("listStreams", "poster", "generateQris", "paymentStatus", "checkAccess",
                     "listUserSessions", "userSessionForStream", "qrImage", "qrCard", "watchHere",
                     "statusSocket", "openapi", "apiDocs"), "viewer"),
    **dict.fromkeys(("paymentNotification", "simulatorPay"), "provider"),
    **dict.fromkeys(("revokeSession", "listGrants", "endGrant", "listPayments",
                     "listNotifications", "requestRefund", "listRefunds", "cancelStream",
                     "healthz", "readyz", "metrics"), "operator"),
    **dict.fromkeys(("hls", "hlsToken", "gateAuth", "keysMedia", "keysKey"), "gate"),
}


def _tagged(paths: dict[str, dict[str, Schema]]) -> dict[str, dict[str, Schema]]:
    for operations in paths.values():
        for operation in operations.values():
            operation["tags"] = [_TAG_OF[operation["operationId"]]]
    return paths


def document(*, simulator_enabled: bool, keys_delivery: bool = False) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stream pay-gate",
            "version": "1",
            "description": "Pay-per-view live streams paid by QRIS. Every JSON answer is "
                           "`{success: true, data}` or `{success: false, error, code}`; "
                           "`error` is for people (Indonesian unless Accept-Language "
                           "prefers English), `code` is for programs.",
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": _tagged(_operations(simulator_enabled)
                         | (_keys_delivery_operations() if keys_delivery else {})),
        "components": {
            "schemas": {"Error": {
                "type": "object", "required": ["success", "error", "code"],
                "additionalProperties": False,
                "properties": {"success": {"const": False}, "error": {"type": "string"},
                               "code": {"type": "string", "enum": error_codes()}}}},
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                           "description": "Server to server: may act for any userId."},
                "OperatorBearer": {"type": "http", "scheme": "bearer",
                                   "description": "The API key as a bearer token."},
                "PlatformToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                  "description": "The host platform's HS256 JWT (sub)."},
                "ViewerCookie": {"type": "apiKey", "in": "cookie", "name": VIEWER_COOKIE,
                                 "description": "Issued by the service on first contact."},
                "GateCookie": {"type": "apiKey", "in": "cookie", "name": "gate",
                               "description": "Set by check-access for one stream."},
            },
        },
    }
