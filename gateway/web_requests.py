"""What a request says about where it came from, and how to answer it there: the
client's address (forwarding headers believed only from GATEWAY_TRUSTED_PROXIES), the
host viewers reach us at, and cookies that are Secure whenever the viewer is on HTTPS.
Shared by the handlers and the middleware (handlers are entry points, never a library),
and state lookups that work from the root application and from the console's.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TypeVar

from aiohttp import web

from gateway.keys import SETTINGS, UNTRUSTED_FORWARDING
from gateway.settings import IpNetwork

T = TypeVar("T")


def state(request: web.Request, key: web.AppKey[T]) -> T:
    """The application's state under `key`, from a handler of the root application
    (its own media routes run with no chain of applications) or of the console, a
    sub-application whose state is its parent's."""
    app = request.app
    return app[key] if key in app else request.config_dict[key]



def add_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, *,
               path: str, max_age_s: int) -> None:
    """Set an HttpOnly, SameSite=Lax cookie (Secure over HTTPS). Written as a header:
    http.cookies costs ~13 us a cookie, a noticeable share of a check-access, and every
    value here is base64url and dots, nothing to quote."""
    response.headers.add(
        "Set-Cookie",
        f"{name}={value}; Max-Age={max_age_s}; Path={path}; HttpOnly; SameSite=Lax"
        + ("; Secure" if cookie_secure(request) else ""),
    )


def cookie_secure(request: web.Request) -> bool:
    """Secure cookies whenever the viewer reached us over HTTPS, directly or through a
    TLS-terminating proxy we were told about (GATEWAY_PUBLIC_URL, or a trusted proxy's
    X-Forwarded-Proto)."""
    return (request.secure or state(request, SETTINGS).secure_cookies
            or forwarded_header(request, "X-Forwarded-Proto") == "https")


def public_host(request: web.Request) -> str:
    """The host viewers reach us at: GATEWAY_PUBLIC_URL's when set, so that a proxy that
    forgets to pass `Host` on cannot make the viewer's own page look foreign."""
    public_url = state(request, SETTINGS).public_url
    if public_url is not None:
        return authority_of(public_url)
    return request.host


@functools.cache
def authority_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


_FORWARDED_FOR = "X-Forwarded-For"


def client_address(request: web.Request,
                   proxies: tuple[IpNetwork, ...] | None = None) -> str:
    """The viewer's address: the connection's, or, when the connection comes from a
    GATEWAY_TRUSTED_PROXIES proxy, the rightmost X-Forwarded-For address that is not a
    trusted proxy itself (then X-Real-IP). Anyone else's forwarding headers are ignored.
    `proxies`: the settings' trusted proxies, for a caller that holds them already."""
    peer = request.remote or ""
    if proxies is None:
        proxies = state(request, SETTINGS).trusted_proxies
        if _FORWARDED_FOR in request.headers and not (proxies and _trusted(peer, proxies)):
            # Through a proxy nobody trusted: noticed on the pages' and the API's
            # requests; the media path (which passes `proxies`) does not pay for it.
            state(request, UNTRUSTED_FORWARDING).saw(peer)
    if not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        for hop in reversed(hops):
            if not _trusted(hop, proxies):
                return hop if _is_address(hop) else peer
        return hops[0] if _is_address(hops[0]) else peer
    real_ip = request.headers.get("X-Real-IP", "").strip()
    return real_ip if _is_address(real_ip) else peer


def forwarded_header(request: web.Request, name: str) -> str | None:
    """An X-Forwarded-* header, believed only from a trusted proxy."""
    proxies = state(request, SETTINGS).trusted_proxies
    if proxies and _trusted(request.remote or "", proxies):
        value = request.headers.get(name)
        return value.strip().lower() if value else None
    return None


@functools.lru_cache(maxsize=4096)
def _trusted(address: str, proxies: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


@functools.lru_cache(maxsize=4096)
def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
