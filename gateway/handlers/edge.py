"""GET /gate/auth: nginx's `auth_request` decisions, when nginx serves the bytes.

nginx asks with the viewer's original URI (`X-Original-URI`), their cookies and their
address (`X-Forwarded-For`, believed from GATEWAY_TRUSTED_PROXIES), and gets 204 (serve
it) or 403 (refuse: nginx turns any other status into a 500). The decision is the Python
gate's own (`HlsGate.admit`), in memory, never the store. `X-Accel-Expires` says how long
nginx may reuse it: a few seconds, so a revoked session stops within that, and never
past the grant's expiry. `gateway nginx-config` writes the nginx side.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest
from gateway.gate import urls
from gateway.gate.origins import SEGMENT_MAX_AGE_S
from gateway.handlers.common import media_request
from gateway.keys import GATE
from gateway.middlewares import error_response

# How long nginx may reuse a decision: a revocation or a newly ended session takes at
# most this long (plus the change feed's few milliseconds) to stop playback.
DECISION_REUSE_S = 5


async def auth(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    try:
        uri = request.headers.get("X-Original-URI")
        if not uri:
            raise InvalidRequest(detail="X-Original-URI is required")
        target = urls.target_of(uri)
        if target is None:
            raise InvalidRequest(detail="X-Original-URI is not a gate URI")
        asked = media_request(request, gate, target.path_token, target.stream_id,
                              target.path)
        _, grant, _ = gate.admit_now(asked) or await gate.admit(asked)
    except GatewayError as refused:
        response = error_response(request, 403, refused.code, refused.params)
        # nginx's refusal page shows the viewer this code, as the Python gate would.
        response.headers["X-Gate-Code"] = refused.code
        response.headers["X-Accel-Expires"] = str(DECISION_REUSE_S)
        return response
    now_ms = asked[-1]
    remaining_s = (grant.expires_at_ms - now_ms) // 1000
    # nginx keeps a decision for whole seconds from when it stored it: one second short
    # of the expiry, so that a reused "yes" can never outlive the grant.
    reuse_s = max(0, min(DECISION_REUSE_S, remaining_s - 1))
    return web.Response(status=204, headers={
        "X-Accel-Expires": str(reuse_s),
        # A browser may keep a segment as long as access lasts, counted from the last
        # moment this decision may still be reused.
        "X-Gate-Segment-Max-Age": str(max(0, min(SEGMENT_MAX_AGE_S, remaining_s - reuse_s))),
    })
