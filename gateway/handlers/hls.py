"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions.
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.catalog import Stream
from gateway.errors import NoAccess, UnknownStream
from gateway.gate.access import GATE_COOKIE, AccessGrant
from gateway.gate.origins import Origin
from gateway.gate.paths import MediaPath, media_path
from gateway.handlers.common import add_cookie, client_address
from gateway.keys import GATE, METRICS, ORIGINS, PLAYBACK_URLS
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
    origin = request.app[ORIGINS].get(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    token = path_token or request.cookies.get(GATE_COOKIE)
    try:
        grant = request.app[GATE].check(token, stream_id)
    except NoAccess as refused:
        reason = str(refused.params["reason"])
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if path_token else "cookie", client=client_address(request))
        request.app[METRICS].gate_refusals.labels(reason).inc()
        raise
    request.app[METRICS].gate_granted += 1
    return origin, grant, media_path(path)


_TOKEN_SLOT = "TOKEN"


def playback_url_templates(app: web.Application, stream: Stream) -> tuple[str, str]:
    """A stream's two playlist URLs from the named routes, once at start-up: the cookie
    form, and the path-token form with a slot for the token."""
    router = app.router
    return (str(router["hls"].url_for(stream_id=stream.stream_id, path=stream.playlist)),
            str(router["hls-token"].url_for(stream_id=stream.stream_id, token=_TOKEN_SLOT,
                                            path=stream.playlist)))


def playback_urls(request: web.Request, stream: Stream, token: str) -> dict[str, str]:
    """Both URL forms of a stream's playlist: cookie-gated, and with the token in the path
    for players that send no cookies (tokens are URL-safe as they are)."""
    cookie_form, token_form = request.app[PLAYBACK_URLS][stream.stream_id]
    return {"playbackUrl": cookie_form,
            "tokenPlaybackUrl": token_form.replace(_TOKEN_SLOT, token, 1)}


def set_gate_cookie(request: web.Request, response: web.StreamResponse, stream: Stream,
                    token: str, remaining_ms: int) -> None:
    """The access cookie: scoped to this stream's gate path, living as long as access."""
    add_cookie(request, response, GATE_COOKIE, token, path=f"/hls/{stream.stream_id}/",
               max_age_s=max(1, remaining_ms // 1000))
