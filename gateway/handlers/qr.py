"""GET /api/qr/{sessionId}.png: the session's QRIS payload as an image, drawn here."""

from __future__ import annotations

from aiohttp import web

from gateway.handlers.common import current_viewer, path_value, query_value
from gateway.identity import session_owner
from gateway.ids import SESSION_ID, USER_ID
from gateway.keys import CLOCK, QR_IMAGES, SESSIONS


async def qr_png(request: web.Request) -> web.Response:
    session_id = path_value(request, "session_id", SESSION_ID)
    owner = session_owner(current_viewer(request), query_value(request, "userId", USER_ID))
    session = await request.app[SESSIONS].owned_session(owner, session_id=session_id)
    png = await request.app[QR_IMAGES].png(session.session_id, session.qr_string)
    # The payload of a session never changes, so the image may be cached by the
    # viewer's browser (only: it is theirs) for as long as it can be paid.
    max_age_s = max(0, session.remaining_ms(request.app[CLOCK]()) // 1000)
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"Cache-Control": f"private, max-age={max_age_s}"},
    )
