"""GET /api/qr/{sessionId}.png: the session's QRIS payload as an image, drawn here;
GET /api/qr/{sessionId}/card.png: the same code on the card a payer saves ("Simpan QR")."""

from __future__ import annotations

from aiohttp import web

from gateway import qris
from gateway.catalog import Stream
from gateway.handlers.common import current_viewer, path_value, query_value
from gateway.i18n import catalog, choose_language, date_time_text, rupiah
from gateway.identity import session_owner
from gateway.ids import SESSION_ID, USER_ID
from gateway.keys import CATALOG, CLOCK, QR_IMAGES, SESSIONS
from gateway.model import PaymentSession
from gateway.qr_image import CardText


async def qr_png(request: web.Request) -> web.Response:
    session_id = path_value(request, "session_id", SESSION_ID)
    owner = session_owner(current_viewer(request), query_value(request, "userId", USER_ID))
    session = await request.app[SESSIONS].owned_session(owner, session_id=session_id)
    png = await request.app[QR_IMAGES].png(session.session_id, session.qr_string)
    return _png_response(request, session, png)


async def qr_card_png(request: web.Request) -> web.Response:
    session_id = path_value(request, "session_id", SESSION_ID)
    owner = session_owner(current_viewer(request), query_value(request, "userId", USER_ID))
    session = await request.app[SESSIONS].owned_session(owner, session_id=session_id)
    language = choose_language(request.headers.get("Accept-Language"))
    text = card_text(session, request.app[CATALOG].get(session.stream_id), language)
    png = await request.app[QR_IMAGES].card_png(f"{session.session_id}/card/{language}",
                                                session.qr_string, text)
    response = _png_response(request, session, png)
    response.headers["Vary"] = "Accept-Language"
    return response


def card_text(session: PaymentSession, stream: Stream | None, language: str) -> CardText:
    """The card's words: what the payer's wallet will show them (amount, merchant, NMID,
    all read from the QRIS payload itself) and until when the code can be paid."""
    page = catalog(language)["page"]
    payload = qris.parse(session.qr_string)
    return CardText(
        amount=rupiah(session.amount),
        merchant_name=payload.merchant_name or "",
        nmid=f"{page['nmid_label']}: {payload.nmid}" if payload.nmid else "",
        pay_before=page["card_pay_before"].format(
            when=date_time_text(session.expires_at_ms, language)),
        title=stream.title if stream is not None else session.stream_id,
        tagline=page["qris_tagline"])


def _png_response(request: web.Request, session: PaymentSession, png: bytes) -> web.Response:
    # The payload of a session never changes, so the image may be cached by the
    # viewer's browser (only: it is theirs) for as long as it can be paid.
    max_age_s = max(0, session.remaining_ms(request.app[CLOCK]()) // 1000)
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"Cache-Control": f"private, max-age={max_age_s}"},
    )
