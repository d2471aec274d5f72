"""The viewer's pages: the stream list and the watch page (pay, then play)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway import qris
from gateway.catalog import Stream
from gateway.errors import DeviceLimit, SessionNotFound, UnknownStream
from gateway.gate.hls_gate import HANDOVER_MS, PlaybackGrant
from gateway.handlers.common import (
    access_answer,
    current_viewer,
    known_viewer_id,
    path_value,
    poster_url,
    request_device,
    set_gate_cookie,
)
from gateway.i18n import (
    catalog,
    choose_language,
    date_time_text,
    duration_text,
    rupiah,
    time_until_text,
)
from gateway.identity import acting_user
from gateway.ids import SESSION_ID
from gateway.keys import (
    CATALOG,
    CLOCK,
    GATE,
    HLS_JS_URL,
    REFUNDS,
    SESSIONS,
    SETTINGS,
    STREAM_HEALTH,
)
from gateway.model import (
    ENDED_BY_REVOCATION,
    RENEWAL_WINDOW_MS,
    PaymentSession,
    SessionStatus,
)
from gateway.refund_model import ENDED_BY_CANCELLATION, ENDED_BY_REFUND
from gateway.session_json import access_json
from gateway.stream_health import StreamStatus

# Why a ticket can end early (model.PaymentSession.ended_reason), each with its words.
ENDED_REASONS = (ENDED_BY_REVOCATION, ENDED_BY_REFUND, ENDED_BY_CANCELLATION)

# The watch page warns this long before access ends (and offers the next window from
# RENEWAL_WINDOW_MS on).
ACCESS_WARNING_MS = 5 * 60 * 1000


def page_context(request: web.Request) -> dict[str, Any]:
    """What every page's frame needs: language, text, the footer's links."""
    language = choose_language(request.headers.get("Accept-Language"))
    settings = request.app[SETTINGS]
    return {
        "lang": language,
        "t": catalog(language)["page"],
        "support_url": settings.support_url,
        "terms_url": settings.terms_url,
    }


def stream_view(request: web.Request, stream: Stream, language: str) -> dict[str, Any]:
    """A stream as the pages show it: status, when it starts, for how long a ticket."""
    now_ms = request.app[CLOCK]()
    status = request.app[STREAM_HEALTH].status(stream)
    starts_at_ms = stream.starts_at_ms
    return {
        "stream": stream,
        "status": status.value,
        "live": status is StreamStatus.LIVE,
        "buyable": status in (StreamStatus.LIVE, StreamStatus.SCHEDULED),
        "poster": poster_url(request, stream),
        "starts_at_text": date_time_text(starts_at_ms, language) if starts_at_ms else None,
        "starts_in_text": (time_until_text(starts_at_ms - now_ms, language)
                           if starts_at_ms and status is StreamStatus.SCHEDULED else None),
        "ends_at_text": date_time_text(stream.ends_at_ms, language)
        if stream.ends_at_ms else None,
        "access_duration": duration_text(
            stream.access_seconds_or(request.app[SETTINGS].access_seconds), language),
    }


async def held_tickets(request: web.Request) -> dict[str, PaymentSession]:
    """The paid sessions of a viewer we already know, by stream. Never issues a
    cookie: looking at the list is not a reason to be remembered."""
    user_id = known_viewer_id(request)
    if user_id is None:
        return {}
    held: dict[str, PaymentSession] = {}
    for session in await request.app[SESSIONS].active_sessions(user_id):
        if session.status == SessionStatus.PAID:
            held.setdefault(session.stream_id, session)
    return held


async def index(request: web.Request) -> web.Response:
    context = page_context(request)
    language = context["lang"]
    held = await held_tickets(request)
    now_ms = request.app[CLOCK]()
    context["streams"] = [
        stream_view(request, stream, language) | {
            "held_text": _held_text(held[stream.stream_id], now_ms, language)
            if stream.stream_id in held else None,
        }
        for stream in request.app[CATALOG]
    ]
    return aiohttp_jinja2.render_template("index.html", request, context)


def _held_text(session: PaymentSession, now_ms: int, language: str) -> str:
    t = catalog(language)["page"]
    starts_at_ms = session.starts_at_ms if session.starts_at_ms is not None else 0
    if starts_at_ms > now_ms:
        return str(t["held_from"].format(when=date_time_text(starts_at_ms, language)))
    return str(t["held_left"].format(left=time_until_text(session.remaining_ms(now_ms),
                                                         language)))


async def watch(request: web.Request) -> web.Response:
    stream = request.app[CATALOG].get(request.match_info["stream_id"])
    if stream is None:
        raise UnknownStream()
    user_id = acting_user(current_viewer(request), None)
    decision = await request.app[SESSIONS].check_access(user_id, stream.stream_id, None)
    context = page_context(request)
    router = request.app.router
    view = stream_view(request, stream, context["lang"])
    grant: PlaybackGrant | None = None
    access: dict[str, Any] | None = None
    if decision.has_access and decision.session is not None:
        access = access_json(decision)
        try:
            grant = await request.app[GATE].grant(decision.session, decision.remaining_ms,
                                                  request_device(request, None),
                                                  decision.next_session)
        except DeviceLimit:
            access["deviceLimit"] = True  # the page offers "watch here instead"
        else:
            access.update(grant.urls)
    urls = {
        "generateQris": str(router["generate-qris"].url_for()),
        "checkAccess": str(router["check-access"].url_for()),
        "watchHere": str(router["watch-here"].url_for()),
        "ws": str(router["ws"].url_for()),
    }
    simulator = "simulator-pay" in router
    if simulator:
        urls["simulatorPay"] = str(router["simulator-pay"].url_for(trx_id="TRX_ID"))
    cancelled = (await _cancellation_view(request, stream, user_id, context["lang"])
                 if view["status"] == StreamStatus.CANCELLED.value else None)
    # A ticket taken away (revoked, refunded, show cancelled): the page says so, and
    # offers no QR (a cancelled show's own panel says it all).
    ended = (await access_answer(request, decision)
             if decision.ended is not None and cancelled is None else None)
    context.update(
        **view,
        cancelled=cancelled,
        has_access=access is not None and "deviceLimit" not in access,
        device_limit=access is not None and "deviceLimit" in access,
        ended=ended,
        waiting=decision.starts_in_ms is not None,
        simulator=simulator,
        hls_js_url=request.app[HLS_JS_URL],
        max_devices=request.app[SETTINGS].max_devices,
        config={"streamId": stream.stream_id, "strings": context["t"], "urls": urls,
                "price": stream.price,
                # What the page starts with: playing (or the device limit), waiting
                # for the start, paying, or nothing to sell.
                "access": access, "maxDevices": request.app[SETTINGS].max_devices,
                "ticket": access_json(decision) if decision.starts_in_ms is not None
                else None,
                "buyable": view["buyable"], "cancelled": cancelled is not None,
                "ended": ended, "supportUrl": request.app[SETTINGS].support_url,
                "renewWindowMs": RENEWAL_WINDOW_MS,
                "warnBeforeMs": ACCESS_WARNING_MS,
                # Keys delivery: when check-access hands over a paid next window's token.
                "handoverMs": HANDOVER_MS
                if request.app[SETTINGS].delivery == "keys" else 0},
    )
    response = aiohttp_jinja2.render_template("watch.html", request, context)
    if grant is not None:
        set_gate_cookie(request, response, grant)
    return response


async def _cancellation_view(request: web.Request, stream: Stream, user_id: str,
                             language: str) -> dict[str, Any]:
    """A cancelled show, as its page tells a viewer: why, and where the money of each
    of their tickets stands."""
    refunds = request.app[REFUNDS]
    cancellation = refunds.cancelled.get(stream.stream_id)
    strings = catalog(language)["page"]
    money = []
    for ticket in await request.app[SESSIONS].purchases(user_id):
        if ticket.stream_id != stream.stream_id:
            continue
        for refund in await refunds.of_payment(ticket.trx_id):
            money.append(strings[f"refund_state_{refund.status.value}"].format(
                amount=rupiah(refund.amount)))
    return {"reason": cancellation.reason if cancellation else "", "refunds": money}


async def tickets(request: web.Request) -> web.Response:
    """ "Tiket saya": what this viewer bought, newest first, each with its receipt."""
    context = page_context(request)
    language = context["lang"]
    user_id = known_viewer_id(request)
    purchases = await request.app[SESSIONS].purchases(user_id) if user_id else []
    now_ms = request.app[CLOCK]()
    context["tickets"] = [ticket_view(request, session, now_ms, language)
                          for session in purchases]
    response = aiohttp_jinja2.render_template("tickets.html", request, context)
    response.headers["Cache-Control"] = "private, no-store"
    return response


async def receipt(request: web.Request) -> web.Response:
    """One purchase's receipt, made to be printed or saved as a PDF."""
    session_id = path_value(request, "session_id", SESSION_ID)
    user_id = known_viewer_id(request)
    if user_id is None:
        raise SessionNotFound()
    session = await request.app[SESSIONS].owned_session(user_id, session_id=session_id)
    if session.paid_at_ms is None:
        raise SessionNotFound()  # an unpaid QR is no purchase
    context = page_context(request)
    now_ms = request.app[CLOCK]()
    ticket = ticket_view(request, session, now_ms, context["lang"])
    payload = qris.parse(session.qr_string)
    context.update(ticket=ticket, merchant_name=payload.merchant_name,
                   nmid=payload.nmid)
    response = aiohttp_jinja2.render_template("receipt.html", request, context)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def ticket_view(request: web.Request, session: PaymentSession, now_ms: int,
                language: str) -> dict[str, Any]:
    t = catalog(language)["page"]
    stream = request.app[CATALOG].get(session.stream_id)
    assert session.paid_at_ms is not None
    starts_at_ms = session.starts_at_ms or session.paid_at_ms
    if session.waiting_at(now_ms):
        state = t["ticket_opens"].format(when=date_time_text(starts_at_ms, language))
    elif session.status_at(now_ms) == SessionStatus.PAID:
        state = t["ticket_left"].format(
            left=time_until_text(session.remaining_ms(now_ms), language))
    elif session.ended_reason in ENDED_REASONS:
        # Taken away early: say by what, as the watch page does (issue 27).
        state = t[f"ticket_ended_{session.ended_reason}"]
    else:
        state = t["ticket_over"]
    return {
        "session": session,
        "title": stream.title if stream else session.stream_id,
        "watch_url": str(request.app.router["watch"].url_for(stream_id=session.stream_id))
        if stream else None,
        "receipt_url": str(request.app.router["receipt"].url_for(
            session_id=session.session_id)),
        "active": session.status_at(now_ms) == SessionStatus.PAID,
        "state": state,
        "paid_at_text": date_time_text(session.paid_at_ms, language),
        "starts_at_text": date_time_text(starts_at_ms, language),
        "expires_at_text": date_time_text(session.expires_at_ms, language),
    }
