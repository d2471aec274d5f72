"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions.
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.catalog import Stream
from gateway.errors import NoAccess, UnknownStream
from gateway.gate.access import GATE_COOKIE
from gateway.gate.paths import media_path
from gateway.handlers.common import cookie_secure
from gateway.keys import CATALOG, GATE, ORIGINS
from gateway.logs import log_event

log = logging.getLogger("gateway.gate")


async def serve(request: web.Request) -> web.StreamResponse:
    stream_id = request.match_info["stream_id"]
    if request.app[CATALOG].get(stream_id) is None:
        raise UnknownStream()
    token = request.match_info.get("token") or request.cookies.get(GATE_COOKIE)
    try:
        grant = request.app[GATE].check(token, stream_id)
    except NoAccess as refused:
        log_event(log, "gate_refused", streamId=stream_id, reason=refused.params["reason"],
                  form="path" if "token" in request.match_info else "cookie")
        raise
    media = media_path(request.match_info["path"])
    return await request.app[ORIGINS][stream_id].serve(request, media, grant)


def playback_urls(request: web.Request, stream: Stream, token: str) -> dict[str, str]:
    """Both URL forms of a stream's playlist: cookie-gated, and with the token in the path
    for players that send no cookies."""
    router = request.app.router
    return {
        "playbackUrl": str(router["hls"].url_for(stream_id=stream.stream_id,
                                                 path=stream.playlist)),
        "tokenPlaybackUrl": str(router["hls-token"].url_for(
            stream_id=stream.stream_id, token=token, path=stream.playlist)),
    }


def set_gate_cookie(request: web.Request, response: web.StreamResponse, stream: Stream,
                    token: str, remaining_ms: int) -> None:
    """The access cookie: scoped to this stream's gate path, living as long as access."""
    response.set_cookie(
        GATE_COOKIE, token, max_age=max(1, remaining_ms // 1000),
        path=f"/hls/{stream.stream_id}/", httponly=True, samesite="Lax",
        secure=cookie_secure(request),
    )
