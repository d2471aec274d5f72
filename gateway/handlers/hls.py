"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions.
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import NoAccess, UnknownStream
from gateway.gate.access import GATE_COOKIE, AccessGrant
from gateway.gate.origins import Origin
from gateway.gate.paths import MediaPath, media_path
from gateway.handlers.common import client_address
from gateway.keys import GATE, METRICS
from gateway.logs import log_event

log = logging.getLogger("gateway.gate")


async def serve(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    origin, grant, media = admit(request, match["stream_id"], match.get("token"),
                                 match["path"])
    return await origin.serve(request, media, grant)


def admit(request: web.Request, stream_id: str, path_token: str | None,
          path: str) -> tuple[Origin, AccessGrant, MediaPath]:
    """The one access decision, for this gate and for nginx's (/gate/auth): a known
    stream, a valid token for it (path form first, else the cookie: signature, stream,
    expiry, ended sessions) and an allowed path. In memory, never the store. Refusals
    are logged and counted here, whoever asked. A check that needs the viewer's address
    (the device limit) belongs here too: `client_address(request)` gives it, behind
    nginx as well."""
    gate = request.app[GATE]
    origin = gate.origin(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    token = path_token or request.cookies.get(GATE_COOKIE)
    try:
        grant = gate.check(token, stream_id)
    except NoAccess as refused:
        reason = str(refused.params["reason"])
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if path_token else "cookie", client=client_address(request))
        request.app[METRICS].gate_refusals.labels(reason).inc()
        raise
    request.app[METRICS].gate_granted += 1
    return origin, grant, media_path(path)

