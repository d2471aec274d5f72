"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions,
and the purchase's count of playing devices (gate/devices.py).
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.catalog import Stream
from gateway.errors import DeviceLimit, NoAccess, UnknownStream
from gateway.gate.access import GATE_COOKIE
from gateway.gate.paths import media_path
from gateway.handlers.common import add_cookie, client_address
from gateway.keys import (
    DEVICE_COUNTER,
    GATE,
    METRICS,
    ORIGINS,
    PLAYBACK_URLS,
)
from gateway.logs import log_event

log = logging.getLogger("gateway.gate")


async def serve(request: web.Request) -> web.StreamResponse:
    stream_id = request.match_info["stream_id"]
    origin = request.app[ORIGINS].get(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    token = request.match_info.get("token") or request.cookies.get(GATE_COOKIE)
    try:
        grant = request.app[GATE].check(token, stream_id)
        counter = request.app[DEVICE_COUNTER]
        if counter.counting:
            await counter.admit(grant.session_id, grant.grant_id, grant.expires_at_ms,
                                client_address(request))
    except (NoAccess, DeviceLimit) as refused:
        reason = str(refused.params.get("reason", refused.code))
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if "token" in request.match_info else "cookie")
        request.app[METRICS].gate_refusals.labels(reason).inc()
        raise
    request.app[METRICS].gate_granted += 1
    media = media_path(request.match_info["path"])
    return await origin.serve(request, media, grant)


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
