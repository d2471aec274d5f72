"""GET /gate/auth: nginx's `auth_request` decisions, when nginx serves the bytes.

nginx asks with the viewer's original URI (`X-Original-URI`), their cookies and their
address (`X-Forwarded-For`, believed from GATEWAY_TRUSTED_PROXIES), and gets 204 (serve
it) or 403 (refuse: nginx turns any other status into a 500). The decision is the Python
gate's own (`hls.admit`), in memory, never the store. `X-Accel-Expires` says how long
nginx may reuse it: a few seconds, so a revoked session stops within that, and never
past the grant's expiry. `gateway nginx-config` writes the nginx side.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest
from gateway.gate.origins import SEGMENT_MAX_AGE_S
from gateway.handlers.hls import admit
from gateway.keys import CLOCK
from gateway.middlewares import error_response

# How long nginx may reuse a decision: a revocation or a newly ended session takes at
# most this long (plus the change feed's few milliseconds) to stop playback.
DECISION_REUSE_S = 5
_HLS_PREFIX = "/hls/"


async def auth(request: web.Request) -> web.Response:
    try:
        stream_id, path_token, path = original_target(request.headers.get("X-Original-URI"))
        _, grant, _ = await admit(request, stream_id, path_token, path)
    except GatewayError as refused:
        response = error_response(request, 403, refused.code, refused.params)
        # nginx's refusal page shows the viewer this code, as the Python gate would.
        response.headers["X-Gate-Code"] = refused.code
        response.headers["X-Accel-Expires"] = str(DECISION_REUSE_S)
        return response
    remaining_s = (grant.expires_at_ms - request.app[CLOCK]()) // 1000
    # nginx keeps a decision for whole seconds from when it stored it: one second short
    # of the expiry, so that a reused "yes" can never outlive the grant.
    reuse_s = max(0, min(DECISION_REUSE_S, remaining_s - 1))
    return web.Response(status=204, headers={
        "X-Accel-Expires": str(reuse_s),
        # A browser may keep a segment as long as access lasts, counted from the last
        # moment this decision may still be reused.
        "X-Gate-Segment-Max-Age": str(max(0, min(SEGMENT_MAX_AGE_S, remaining_s - reuse_s))),
    })


def original_target(uri: str | None) -> tuple[str, str | None, str]:
    """(stream id, path token or None, media path) of a gate URI, read the way the route
    table reads it: `/hls/{streamId}/t/{token}/{path}` first, else `/hls/{streamId}/{path}`.
    Percent-escapes are decoded, as nginx decodes the path it serves; what they decode to
    still has to pass the path allow-list."""
    if not uri:
        raise InvalidRequest(detail="X-Original-URI is required")
    path = unquote(uri.split("?", 1)[0])
    if not path.startswith(_HLS_PREFIX):
        raise InvalidRequest(detail="X-Original-URI is not a gate URI")
    stream_id, _, rest = path[len(_HLS_PREFIX):].partition("/")
    if rest.startswith("t/"):
        token, slash, media = rest[2:].partition("/")
        if token and slash and media:
            return stream_id, token, media
    return stream_id, None, rest
