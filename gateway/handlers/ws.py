"""GET /ws?sessionId=: a viewer's live session status (SPEC, WebSocket).

The current state at once, then one message per change. Only the session's owner may
listen: anyone else gets an error message and close code 4403, an unknown session 4404.
No per-message compression (~90 KB of zlib state per socket); heartbeats keep idle
connections open through proxies and find dead ones.
"""

from __future__ import annotations

import json
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    NotYours,
    SessionNotFound,
    StoreUnavailable,
    TooManyWebSockets,
)
from gateway.handlers.common import (
    current_viewer,
    header_text,
    query_value,
    same_host,
)
from gateway.i18n import choose_language, error_message
from gateway.identity import Viewer, session_owner
from gateway.ids import SESSION_ID, STREAM_ID, USER_ID
from gateway.keys import (
    LINE_WATCHERS,
    SESSIONS,
    SETTINGS,
    STATUS_HUB,
    WEBSOCKETS,
    WEBSOCKETS_PER_VIEWER,
)
from gateway.logs import log_event
from gateway.settings import SERVER_NAME

log = logging.getLogger("gateway.ws")

HEARTBEAT_S = 25.0
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


async def status_socket(request: web.Request) -> web.WebSocketResponse:
    if "Origin" in request.headers and not same_host(request):
        # A page on another site must not open a socket with this viewer's cookie. When
        # it is our own page behind a proxy that drops `Host`, say how to fix that.
        log_event(log, "websocket_origin_refused", level=logging.WARNING,
                  origin=header_text(request, "Origin"), host=header_text(request, "Host"),
                  hint="behind a proxy: set GATEWAY_PUBLIC_URL, or have the "
                  "proxy pass Host on (gateway nginx-config does)")
        raise NotYours()
    viewer = current_viewer(request)  # before the handshake: it may set the cookie
    # Each socket holds memory and a descriptor for hours: one viewer gets a few (tabs,
    # devices behind one cookie), not thousands. Server callers are trusted.
    per_viewer = request.app[WEBSOCKETS_PER_VIEWER]
    holder = viewer.user_id
    if holder is not None:
        if per_viewer[holder] >= request.app[SETTINGS].max_websockets_per_viewer:
            raise TooManyWebSockets()
        per_viewer[holder] += 1
    try:
        return await _serve_socket(request, viewer)
    finally:
        if holder is not None:
            per_viewer[holder] -= 1
            if not per_viewer[holder]:
                del per_viewer[holder]


# What aiohttp's handshake reads. Bytes that are no text reach it as lone surrogates,
# which it fails on (a 500) instead of refusing.
_HANDSHAKE_HEADERS = ("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                      "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions")


async def _serve_socket(request: web.Request, viewer: Viewer) -> web.WebSocketResponse:
    for name in _HANDSHAKE_HEADERS:
        if name in request.headers and header_text(request, name) is None:
            raise InvalidRequest(detail=f"{name} is not text")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, compress=False, max_msg_size=4096)
    ws.headers["Server"] = SERVER_NAME  # finish_headers leaves a handshake alone
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    if "sessionId" not in request.query and "streamId" in request.query:
        try:
            return await _serve_place(request, viewer, ws)
        finally:
            sockets.discard(ws)
    session_id: str | None = None
    try:
        try:
            session_id = query_value(request, "sessionId", SESSION_ID, required=True)
            assert session_id is not None
            session = await request.app[SESSIONS].owned_session(
                session_owner(viewer, None), session_id=session_id)
        except (SessionNotFound, InvalidRequest, NotYours, StoreUnavailable) as refused:
            session_id = None
            await _refuse(request, ws, refused)
            return ws
        snapshot = request.app[STATUS_HUB].watch(ws, session)
        del session  # the hub keeps what it needs
        await ws.send_str(snapshot)
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data == "ping":
                await ws.send_str('{"type":"pong"}')  # for clients behind ping-less proxies
    finally:
        if session_id is not None:
            request.app[STATUS_HUB].unwatch(ws, session_id)
        sockets.discard(ws)
    return ws


async def _serve_place(request: web.Request, viewer: Viewer,
                       ws: web.WebSocketResponse) -> web.WebSocketResponse:
    """`/ws?streamId=`: the caller's place in line for the stream (line.py), its
    updates, then the QR when it is made (the page then watches that session)."""
    try:
        stream_id = query_value(request, "streamId", STREAM_ID, required=True)
        # A server caller (API key) names the viewer whose place it follows.
        user_id = (query_value(request, "userId", USER_ID) if viewer.is_server
                   else viewer.user_id)
        if user_id is None:
            raise SessionNotFound()
        assert stream_id is not None
    except (SessionNotFound, InvalidRequest) as refused:
        await _refuse(request, ws, refused)
        return ws
    watchers = request.app[LINE_WATCHERS]
    try:
        watching = await watchers.watch(ws, user_id, stream_id)
    except StoreUnavailable as refused:
        await _refuse(request, ws, refused)
        return ws
    if not watching:
        await _refuse(request, ws, SessionNotFound())
        return ws
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data == "ping":
                await ws.send_str('{"type":"pong"}')
    finally:
        watchers.unwatch(ws, user_id, stream_id)
    return ws


async def _refuse(request: web.Request, ws: web.WebSocketResponse,
                  refused: GatewayError) -> None:
    language = choose_language(request.headers.get("Accept-Language"))
    await ws.send_str(json.dumps({
        "type": "error", "code": refused.code,
        "error": error_message(language, refused.code, refused.params),
    }))
    if isinstance(refused, StoreUnavailable):
        code: int = WSCloseCode.TRY_AGAIN_LATER  # the client reconnects with backoff
    else:
        code = CLOSE_FORBIDDEN if isinstance(refused, NotYours) else CLOSE_NOT_FOUND
    await ws.close(code=code)

