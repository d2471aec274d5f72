"""The HLS gate's handler: /hls/{streamId}/{path} (cookie) and
/hls/{streamId}/t/{token}/{path} (path token), routed outside the middleware
(media_routes.py).

It reads the request into a `MediaRequest` and the gate decides (`HlsGate.admit`):
token signature, stream, expiry, ended sessions, the purchase's count of playing places,
the media path. No access: 403 with `Cache-Control: private, no-store` (set for every
error). Without a coroutine or an await unless the count of places must ask the store,
and from memory for a cached object.
"""

from __future__ import annotations

from aiohttp import web

from gateway.handlers.common import media_request
from gateway.keys import GATE
from gateway.middlewares import failure_response


async def serve(request: web.Request) -> web.StreamResponse:
    try:
        gate = request.app[GATE]
        asked = media_request(request, gate, request.match_info.get("token"),
                              request.match_info["stream_id"], request.match_info["path"])
        origin, grant, media = gate.admit_now(asked) or await gate.admit(asked)
        # From memory, again without an await: most requests end here.
        response = origin.cached(request, media, grant, asked[-1])  # its now_ms
        if response is not None:
            return response
        return await origin.serve(request, media, grant)
    except Exception as exc:  # what the middleware would do, were it in the chain
        return failure_response(request, exc)

