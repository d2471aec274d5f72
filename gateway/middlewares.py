"""Cross-cutting request handling, in one middleware: the one place errors become the
SPEC's JSON (or an HTML page for a browser on a page URL), and the one place response
headers every answer needs are set: a new viewer's cookie, security headers."""

from __future__ import annotations

import logging

import aiohttp_jinja2
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from gateway import errors
from gateway.i18n import catalog, choose_language, error_message
from gateway.identity import VIEWER_COOKIE, VIEWER_COOKIE_MAX_AGE_SECONDS
from gateway.keys import IDENTITY, POSTER_ORIGINS, SETTINGS, VIEWER
from gateway.logs import log_event
from gateway.settings import SERVER_NAME
from gateway.web_requests import add_cookie, public_host

log = logging.getLogger("gateway.http")

STATUS_BY_ERROR: dict[type[errors.GatewayError], int] = {
    errors.InvalidRequest: 400,
    errors.RequestTimeout: 408,
    errors.AmountMismatch: 400,
    errors.Unauthenticated: 401,
    errors.SignInRequired: 401,
    errors.CsrfRefused: 403,
    errors.NotificationRejected: 401,
    errors.NotYours: 403,
    errors.NoAccess: 403,
    errors.DeviceLimit: 403,
    errors.UnknownStream: 404,
    errors.SessionNotFound: 404,
    errors.GrantNotFound: 404,
    errors.SimulatorDisabled: 404,
    errors.MediaNotFound: 404,
    errors.AlreadyHasAccess: 409,
    errors.StreamCancelled: 409,
    errors.NothingToRefund: 409,
    errors.RefundTooLarge: 400,
    errors.RefundNotFound: 404,
    errors.RateLimited: 429,
    errors.TooManyWebSockets: 429,
    errors.StreamOffline: 409,
    errors.ProviderUnavailable: 502,
    errors.ProviderReturnedInvalidQris: 502,
    errors.ProviderSandboxQris: 502,
    errors.ProviderBadResponse: 502,
    errors.ProviderTimeout: 503,
    errors.ProviderRateLimited: 503,
    errors.UpstreamFailed: 502,
    errors.UpstreamTimeout: 504,
    errors.StoreUnavailable: 503,
}
# Answers that say "not now": when to ask again.
RETRY_AFTER_SECONDS: dict[type[errors.GatewayError], int] = {
    errors.StoreUnavailable: 2,
    errors.TooManyWebSockets: 10,
}
CODE_BY_HTTP_STATUS = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                       417: "expectation_failed"}
# Paths whose clients are programs: they always get the SPEC's JSON errors.
_MACHINE_PATHS = ("/api/", "/hls/", "/gate/", "/posters/", "/ws", "/simulator/",
                  "/healthz", "/readyz", "/metrics", "/static/", "/vendor/", "/media/",
                  "/keys/")


def error_response(request: web.Request, status: int, code: str,
                   params: dict[str, object] | None = None) -> web.Response:
    language = choose_language(request.headers.get("Accept-Language"))
    if _wants_page(request):
        t = catalog(language)["page"]
        response = aiohttp_jinja2.render_template("error.html", request, {
            "lang": language, "t": t,
            "heading": t["not_found_heading"] if status == 404 else t["error_heading"],
            "message": error_message(language, code, params or {}),
        }, status=status)
        response.headers["Cache-Control"] = "private, no-store"
        return response
    return _json_error(language, status, code, params or {})


def _json_error(language: str, status: int, code: str,
                params: dict[str, object]) -> web.Response:
    return web.json_response(
        {"success": False, "error": error_message(language, code, params), "code": code},
        status=status,
        # Errors depend on who asks and when: never cache them anywhere.
        headers={"Cache-Control": "private, no-store", "Content-Language": language},
    )


def unparsed_request_response(request: web.BaseRequest, status: int) -> web.Response:
    """The SPEC's JSON error for a request aiohttp refused before routing it (a bad
    request line, header or chunk), or for the last resort (500): no app, no handler, so
    built here from the status alone, with every answer's headers and nothing of the
    request echoed back."""
    code = "internal_error" if status >= 500 else CODE_BY_HTTP_STATUS.get(status, "http_400")
    response = _json_error(choose_language(request.headers.get("Accept-Language")), status,
                           code, {})
    _set_every_answers_headers(response.headers)
    return response


def _is_static(request: web.Request) -> bool:
    route = request.match_info.route
    return isinstance(getattr(route, "resource", None), web.StaticResource)


def _wants_page(request: web.Request) -> bool:
    return (not request.path.startswith(_MACHINE_PATHS)
            and "text/html" in request.headers.get("Accept", ""))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Exception as exc:  # CancelledError is not an Exception: it goes through
        return failure_response(request, exc)
    if not response.prepared:
        finish_headers(request, response)
    return response


def failure_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """What a handler's exception becomes: the SPEC's JSON error (or an error page),
    finished like every answer. Re-raises what is not a failure (a redirect, a reset
    connection). The middleware's, and the media routes' (which skip the middleware,
    see handlers/hls.py), so there is one translation."""
    if isinstance(exc, errors.GatewayError):
        if isinstance(exc, errors.InvalidRequest | errors.RequestTimeout):
            # The client's mistake, so a warning, and one line: no traceback.
            log_event(log, "bad_request", level=logging.WARNING, path=request.path[:200],
                      code=exc.code, detail=str(exc.params.get("detail", ""))[:200])
        response = error_response(request, STATUS_BY_ERROR.get(type(exc), 400), exc.code,
                                  exc.params)
        if isinstance(exc, errors.RequestTimeout):
            response.force_close()  # the rest of a trickled body is not worth waiting for
        retry_after_s = RETRY_AFTER_SECONDS.get(type(exc), exc.params.get("retry_after_s"))
        if retry_after_s is not None:
            response.headers["Retry-After"] = str(retry_after_s)
    elif isinstance(exc, web.HTTPException):
        if exc.status < 400:
            finish_headers(request, exc)
            raise exc
        response = error_response(request, exc.status,
                                  CODE_BY_HTTP_STATUS.get(exc.status, f"http_{exc.status}"))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    elif isinstance(exc, ConnectionResetError):
        raise exc
    elif isinstance(exc, OSError) and _is_static(request):
        # A name no file system takes (too long, say): no such file, like any other.
        response = error_response(request, 404, "not_found")
    else:
        log.exception("unhandled error", extra={"event_fields": {"path": request.path}})
        response = error_response(request, 500, "internal_error")
    finish_headers(request, response)
    return response


# Pages load only their own scripts, styles and media; the player needs blob: for MSE.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{images}; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self' {ws}; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {frames}"
)



_SECURITY_HEADER_SET = hdrs.X_CONTENT_TYPE_OPTIONS


def _set_every_answers_headers(headers: CIMultiDict[str]) -> None:
    headers[hdrs.SERVER] = SERVER_NAME
    headers["Referrer-Policy"] = "same-origin"
    headers[_SECURITY_HEADER_SET] = "nosniff"


def finish_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For every answer, from the middleware, once the handler has returned it (it runs
    on every segment; as an on_response_prepare signal it cost ~3% of a cached playlist
    request). A handler that sends its response itself (a WebSocket, a stream) has set
    what it needs:
    - a viewer seen for the first time gets their signed cookie (here, after the
      handler, so that requests that never asked who the viewer is pay nothing);
    - token-bearing URLs never leak through Referer, and pages run nothing not ours.
    """
    if response.status == 101:
        return  # a WebSocket handshake: the headers below would live as long as the socket
    if _SECURITY_HEADER_SET in response.headers:
        # Finished by its handler: the gate's media answers carry these headers from a
        # table (gate/origins.py:media_headers), and never concern a viewer cookie.
        return
    viewer = request.get(VIEWER)
    if viewer is not None and viewer.via == "new" and viewer.user_id:
        # A header, not response.set_cookie: http.cookies costs ~13 us a cookie.
        add_cookie(request, response, VIEWER_COOKIE,
                   request.app[IDENTITY].cookie_for(viewer.user_id),
                   path="/", max_age_s=VIEWER_COOKIE_MAX_AGE_SECONDS)
    headers = response.headers
    _set_every_answers_headers(headers)
    if headers.get("Content-Type", "").startswith("text/html"):
        host = public_host(request)
        ws = f"ws://{host} wss://{host}"
        headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY.format(
            ws=ws, images=request.app[POSTER_ORIGINS],
            frames=request.app[SETTINGS].frame_ancestors)
