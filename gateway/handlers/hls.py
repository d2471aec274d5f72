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
    stream_id = request.match_info["stream_id"]
    gate = request.app[GATE]
    origin = gate.origin(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    token = request.match_info.get("token") or request.cookies.get(GATE_COOKIE)
    try:
        grant = gate.check(token, stream_id)
    except NoAccess as refused:
        reason = str(refused.params["reason"])
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if "token" in request.match_info else "cookie")
        request.app[METRICS].gate_refusals.labels(reason).inc()
        raise
    request.app[METRICS].gate_granted += 1
    media = media_path(request.match_info["path"])
    return await origin.serve(request, media, grant)

