"""What every handler needs: strict input parsing, the caller's identity, the envelope.

Every input is parsed here, once, at the edge: bodies are UTF-8 JSON within a size and a
depth limit, numbers are ASCII digits within a range, ids match their pattern, and
header or cookie text that is not printable ASCII is no credential at all. What fails is
an `InvalidRequest` (400), never an exception from deeper down (a 500).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from gateway.catalog import Stream
from gateway.device_model import Device, browser_device, program_device
from gateway.errors import InvalidRequest, RequestTimeout, Unauthenticated
from gateway.gate.hls_gate import HlsGate, MediaRequest, PlaybackGrant
from gateway.identity import VIEWER_COOKIE, Viewer
from gateway.keys import IDENTITY, REFUNDS, SETTINGS, VIEWER
from gateway.model import AccessDecision
from gateway.parsing import ascii_int, decode_json
from gateway.session_json import access_json, ended_json
from gateway.web_requests import add_cookie, authority_of, client_address, state

T = TypeVar("T")


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode({"success": True, "data": data}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def access_answer(request: web.Request, decision: AccessDecision) -> dict[str, Any]:
    """check-access's answer; when the viewer's ticket was ended early, also why and
    where its money stands (one refunds read, only then)."""
    data = access_json(decision)
    ticket = decision.ended
    if ticket is not None and ticket.ended_reason is not None:
        refunds = request.app[REFUNDS]
        cancellation = refunds.cancelled.get(ticket.stream_id)
        data |= ended_json(ticket.ended_reason, ticket.session_id,
                           await refunds.of_payment(ticket.trx_id),
                           cancellation.reason if cancellation else None)
    return data


# Visible ASCII (and spaces): what an API key, a bearer token or a cookie can be.
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")


async def read_body(request: web.Request) -> bytes:
    """The raw body, bounded in size (the app's client_max_size: 413) and in time (408),
    so a client trickling its body cannot hold a connection for ever. A body that cannot
    be read (it ends before its length, a chunk or a Content-Encoding is broken) is 400."""
    try:
        async with asyncio.timeout(state(request, SETTINGS).body_timeout_seconds):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout() from None
    except RequestPayloadError:
        raise InvalidRequest(detail="the request body could not be read") from None


async def read_form(request: web.Request) -> dict[str, str]:
    """A form's text fields (the console's), bounded in size and time as `read_body`."""
    try:
        async with asyncio.timeout(state(request, SETTINGS).body_timeout_seconds):
            form = await request.post()
    except TimeoutError:
        raise RequestTimeout() from None
    except (RequestPayloadError, ValueError):  # a body that is no form at all
        raise InvalidRequest(detail="the form could not be read") from None
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def read_json(request: web.Request, shape: type[T], *, allow_empty: bool = False) -> T:
    raw = await read_body(request)
    if allow_empty and not raw.strip():
        raw = b"{}"
    return decode_json(raw, shape)


def query_int(request: web.Request, name: str, low: int, high: int, default: int) -> int:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidRequest(detail=f"{name} given more than once")
    return default if not values else ascii_int(values[0], name, low, high)


def header_text(request: web.Request, name: str) -> str | None:
    """A header's value when it is printable ASCII; None when absent or when it is not
    (aiohttp hands undecodable bytes over as lone surrogates)."""
    value = request.headers.get(name)
    if value is None or not _HEADER_TEXT.fullmatch(value):
        return None
    return value


def credential_header(request: web.Request, name: str) -> str | None:
    """A credential header (X-Api-Key, Authorization): absent is None, and one that
    cannot be a credential (not printable ASCII) is refused like a wrong one, 401."""
    if name not in request.headers:
        return None
    value = header_text(request, name)
    if value is None:
        raise Unauthenticated()
    return value


def cookie_text(request: web.Request, name: str) -> str | None:
    """A cookie's value when it could be one of ours (printable ASCII); None otherwise,
    so a garbled cookie is an unknown viewer, not an error."""
    value = request.cookies.get(name)
    if value is None or len(value) > 4096 or not _HEADER_TEXT.fullmatch(value):
        return None
    return value


def query_value(request: web.Request, name: str, pattern: re.Pattern[str], *,
                required: bool = False) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidRequest(detail=f"{name} given more than once", field=name)
    if not values or values[0] == "":
        if required:
            raise InvalidRequest(detail=f"{name} is required", field=name)
        return None
    if not pattern.fullmatch(values[0]):
        raise InvalidRequest(detail=f"{name} is not a valid id", field=name)
    return values[0]


def path_value(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    value = request.match_info[name]
    if not pattern.fullmatch(value):
        raise InvalidRequest(detail=f"{name} is not a valid id", field=name)
    return value


def _host_of(authority: str) -> str | None:
    try:
        host = urlsplit("//" + authority).hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        return None
    return host.lower() if host else None


def same_host(request: web.Request) -> bool:
    """Whether the `Origin` header names the host viewers reach us at (GATEWAY_PUBLIC_URL's,
    else the one this request was sent to; see public_host). Both are
    compared as ASCII text: an Origin or Host that is not a plain host name (invalid
    IPv6, bytes that are no IDNA) is simply not the same host."""
    origin = header_text(request, "Origin")
    public_url = state(request, SETTINGS).public_url
    host = authority_of(public_url) if public_url is not None else header_text(request, "Host")
    if origin is None or host is None or "://" not in origin:
        return False
    origin_host = _host_of(origin.partition("://")[2])
    return origin_host is not None and origin_host == _host_of(host)


def current_viewer(request: web.Request) -> Viewer:
    """Resolved once per request, lazily, so that only handlers that care about identity
    issue a viewer cookie (see middlewares.finish_headers)."""
    viewer = request.get(VIEWER)
    if viewer is None:
        viewer = state(request, IDENTITY).resolve(
            api_key=credential_header(request, "X-Api-Key"),
            # Garbled: no bearer token at all (the cookie may still say who this is).
            authorization=header_text(request, "Authorization"),
            viewer_cookie=cookie_text(request, VIEWER_COOKIE),
        )
        request[VIEWER] = viewer
    return viewer


def known_viewer_id(request: web.Request) -> str | None:
    """The viewer's id if they have been here before (or are a platform's user), else
    None, without making them a new viewer (which would issue a cookie)."""
    viewer = request.get(VIEWER) or state(request, IDENTITY).resolve(
        api_key=credential_header(request, "X-Api-Key"),
        authorization=header_text(request, "Authorization"),
        viewer_cookie=cookie_text(request, VIEWER_COOKIE),
    )
    if viewer.via == "new":
        return None
    request[VIEWER] = viewer
    return viewer.user_id


def request_device(request: web.Request, device_id: str | None) -> Device:
    """Which device asks (SPEC, Devices): a program acting with the API key or a
    platform token names its own; a browser is its viewer cookie, asking from where it
    plays."""
    viewer = current_viewer(request)
    if viewer.via in ("api_key", "bearer"):
        return program_device(device_id)
    if device_id is not None:
        # Otherwise one browser could name itself as many devices as it liked.
        raise InvalidRequest(detail="deviceId is only for API-key or platform-token callers")
    assert viewer.user_id is not None
    return browser_device(request.cookies.get(VIEWER_COOKIE) or viewer.user_id,
                          client_address(request))


def require_operator(request: web.Request) -> None:
    """The one check for operator endpoints: the API key, as `X-Api-Key` or as a bearer
    token (what Prometheus can send). Missing or wrong, it is a 401. It never resolves
    a viewer, so an operator endpoint never hands anyone a viewer cookie."""
    if not state(request, IDENTITY).is_operator(
            api_key=credential_header(request, "X-Api-Key"),
            authorization=credential_header(request, "Authorization")):
        raise Unauthenticated()


def set_gate_cookie(request: web.Request, response: web.StreamResponse,
                    grant: PlaybackGrant) -> None:
    cookie = grant.cookie
    add_cookie(request, response, cookie.name, cookie.value, path=cookie.path,
               max_age_s=cookie.max_age_s)


def media_request(request: web.Request, gate: HlsGate, path_token: str | None,
                  stream_id: str, path: str) -> MediaRequest:
    """What the gate decides a media request on, read from the request (the URI's parts
    come from the route, or from the URI nginx passed on): for /hls/ and /gate/auth.
    With a path token the cookie is not read: the path form wins whatever it holds."""
    cookie_token = None
    if path_token is None:
        cookies = request.headers.getall(hdrs.COOKIE, None)
        if cookies is not None:
            # Several Cookie headers are read as one, as nginx reads them (gate/urls.py).
            cookie_token = gate.cookie_token("; ".join(cookies))
    return (stream_id, path_token, cookie_token, client_address(request, gate.trusted_proxies),
            path, gate.clock())  # the clock read once: every check reads the same time


def poster_url(request: web.Request, stream: Stream) -> str | None:
    if stream.poster_file is not None:
        return str(request.app.router["poster"].url_for(stream_id=stream.stream_id))
    return stream.poster_url
