"""The viewer's pages: the stream list and the watch page (pay, then play)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from gateway.errors import DeviceLimit, UnknownStream
from gateway.gate.hls_gate import PlaybackGrant
from gateway.handlers.common import current_viewer, request_device, set_gate_cookie
from gateway.i18n import catalog, choose_language
from gateway.identity import acting_user
from gateway.keys import CATALOG, GATE, HLS_JS_URL, SESSIONS, SETTINGS

WS_PATH = "/ws"


def rupiah(amount: int) -> str:
    """Rupiah the Indonesian way: `Rp 25.000`."""
    return "Rp " + f"{amount:,}".replace(",", ".")


def duration_text(seconds: int, t: dict[str, str]) -> str:
    """`2 jam`, `90 menit`, `8 detik`: the largest unit that is exact."""
    if seconds % 3600 == 0:
        return t["unit_hours"].format(n=seconds // 3600)
    if seconds % 60 == 0:
        return t["unit_minutes"].format(n=seconds // 60)
    return t["unit_seconds"].format(n=seconds)


def page_context(request: web.Request) -> dict[str, Any]:
    language = choose_language(request.headers.get("Accept-Language"))
    t = catalog(language)["page"]
    return {
        "lang": language,
        "t": t,
        "access_duration": duration_text(request.app[SETTINGS].access_seconds, t),
    }


async def index(request: web.Request) -> web.Response:
    context = page_context(request)
    streams = request.app[CATALOG]
    context["streams"] = [*streams]
    return aiohttp_jinja2.render_template("index.html", request, context)


async def watch(request: web.Request) -> web.Response:
    stream = request.app[CATALOG].get(request.match_info["stream_id"])
    if stream is None:
        raise UnknownStream()
    user_id = acting_user(current_viewer(request), None)
    decision = await request.app[SESSIONS].check_access(user_id, stream.stream_id, None)
    context = page_context(request)
    router = request.app.router
    grant: PlaybackGrant | None = None
    access: dict[str, Any] | None = None
    if decision.has_access and decision.session is not None:
        access = {"hasAccess": True, "sessionId": decision.session.session_id,
                  "remainingTime": decision.remaining_ms}
        try:
            grant = await request.app[GATE].grant(decision.session, decision.remaining_ms,
                                                  request_device(request, None))
        except DeviceLimit:
            access["deviceLimit"] = True  # the page offers "watch here instead"
        else:
            access.update(grant.urls)
    urls = {
        "generateQris": str(router["generate-qris"].url_for()),
        "checkAccess": str(router["check-access"].url_for()),
        "watchHere": str(router["watch-here"].url_for()),
        "ws": WS_PATH,
    }
    simulator = "simulator-pay" in router
    if simulator:
        urls["simulatorPay"] = str(router["simulator-pay"].url_for(trx_id="TRX_ID"))
    context.update(
        stream=stream,
        has_access=access is not None and "deviceLimit" not in access,
        device_limit=access is not None and "deviceLimit" in access,
        simulator=simulator,
        hls_js_url=request.app[HLS_JS_URL],
        max_devices=request.app[SETTINGS].max_devices,
        config={"streamId": stream.stream_id, "strings": context["t"], "urls": urls,
                "access": access, "maxDevices": request.app[SETTINGS].max_devices},
    )
    response = aiohttp_jinja2.render_template("watch.html", request, context)
    if grant is not None:
        set_gate_cookie(request, response, grant)
    return response
