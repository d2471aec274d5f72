"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions.
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import NoAccess, UnknownStream
from gateway.gate.access import GATE_COOKIE
from gateway.gate.paths import media_path
from gateway.keys import GATE, METRICS
from gateway.logs import log_event

log = logging.getLogger("gateway.gate")


async def serve(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    stream_id = match["stream_id"]
    gate = request.app[GATE]
    origin = gate.origin(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    token = match.get("token") or request.cookies.get(GATE_COOKIE)
    try:
        grant = gate.check(token, stream_id)
    except NoAccess as refused:
        reason = str(refused.params["reason"])
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if "token" in match else "cookie")
        request.app[METRICS].gate_refusals.labels(reason).inc()
        raise
    gate.granted += 1
    media = media_path(match["path"])
    # From memory without a coroutine or an await: most requests end here.
    response = origin.cached(request, media, grant)
    if response is not None:
        return response
    return await origin.serve(request, media, grant)

