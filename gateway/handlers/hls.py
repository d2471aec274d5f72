"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions,
and the purchase's count of playing devices (gate/devices.py).
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import DeviceLimit, NoAccess, UnknownStream
from gateway.gate.access import AccessGrant
from gateway.gate.origins import Origin
from gateway.gate.paths import MediaPath, media_path
from gateway.handlers.common import client_address
from gateway.keys import GATE, METRICS
from gateway.logs import log_event

log = logging.getLogger("gateway.gate")


async def serve(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    origin, grant, media = await admit(request, match["stream_id"], match.get("token"),
                                       match["path"])
    # From memory without another coroutine or an await: most requests end here.
    response = origin.cached(request, media, grant)
    if response is not None:
        return response
    return await origin.serve(request, media, grant)


async def admit(request: web.Request, stream_id: str, path_token: str | None,
                path: str) -> tuple[Origin, AccessGrant, MediaPath]:
    """The one access decision, for this gate and for nginx's (/gate/auth): a known
    stream, a valid token for it (path form first, else the cookie: signature, stream,
    expiry, ended sessions), room for this place among the purchase's playing devices
    (the viewer's address from `client_address(request)`, behind nginx as well), and an
    allowed path. In memory: the device count asks the store only about a place new to
    this process or last reported a few seconds ago, never once per request. Refusals
    are logged and counted here, whoever asked."""
    gate = request.app[GATE]
    origin = gate.origin(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    token = path_token or gate.cookie_token(request)
    address = client_address(request)
    try:
        # From memory, or, for a device new to this process, after asking the store.
        grant = gate.admit_now(token, stream_id, address)
        if grant is None:
            grant = await gate.admit(token, stream_id, address)
    except (NoAccess, DeviceLimit) as refused:
        reason = str(refused.params.get("reason", refused.code))
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if path_token else "cookie", client=address)
        request.app[METRICS].gate_refusals.labels(reason).inc()
        raise
    gate.granted += 1
    return origin, grant, media_path(path)
