"""The gate's URL grammar and the playback URLs, in one place.

    /hls/{streamId}/{path}            the cookie form: the `gate` cookie carries the token
    /hls/{streamId}/t/{token}/{path}  the path-token form, for players that send no cookies

The route table (`ROUTES`), nginx's auth subrequests (`target_of`, the URI nginx saw),
the generated nginx configuration (`nginx_location_pcre`, `stream_path`) and the URLs and
cookie a viewer is handed (`playback_urls`, `stream_path`) all read it from here. Stream
ids and playlist names are URL-safe by the catalog's rules, tokens by their own
(base64url and dots), so the URLs are written as they are, never escaped.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote

PREFIX = "/hls/"
GATE_COOKIE = "gate"
# (route name, pattern), in the order the router must try them: the path-token form
# first, or "t/<token>/..." would be taken for a media path.
ROUTES = (("hls-token", "/hls/{stream_id}/t/{token}/{path:.+}"),
          ("hls", "/hls/{stream_id}/{path:.+}"))
# What a token is made of (tokens.py: base64url fields joined by dots), bounded.
TOKEN_PCRE = "[A-Za-z0-9_.-]{1,512}"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_TOKEN_MAX_CHARS = 512


def stream_path(stream_id: str) -> str:
    """Everything of one stream is under this: the gate cookie's Path, nginx's location."""
    return f"{PREFIX}{stream_id}/"


def playback_urls(stream_id: str, playlist: str, token: str) -> dict[str, str]:
    """The stream's playlist in both forms, as check-access names them."""
    return {"playbackUrl": f"{PREFIX}{stream_id}/{playlist}",
            "tokenPlaybackUrl": f"{PREFIX}{stream_id}/t/{token}/{playlist}"}


class MediaTarget(NamedTuple):
    stream_id: str
    path_token: str | None  # the path-token form's token; None in the cookie form
    path: str  # the media path under the stream, still to be checked (paths.py)


def target_of(uri: str) -> MediaTarget | None:
    """A gate URI as the route table reads it (`ROUTES`, the token form first), or None
    when it is not one. Percent-escapes are decoded, as nginx decodes the path it
    serves; what they decode to still has to pass the media path allow-list."""
    path = unquote(uri.split("?", 1)[0])
    if not path.startswith(PREFIX):
        return None
    stream_id, _, rest = path[len(PREFIX):].partition("/")
    if not stream_id or not rest:
        return None
    if rest.startswith("t/"):
        token, slash, media = rest[2:].partition("/")
        if token and slash and media:
            return MediaTarget(stream_id, token, media)
    return MediaTarget(stream_id, None, rest)


def nginx_location_pcre(stream_id: str, media_pcre: str) -> str:
    """Both forms of one stream's media URIs as one PCRE for an nginx `location ~`,
    capturing `$gate_token` (empty in the cookie form) and `$gate_media`."""
    return (f"^{PREFIX}{stream_id}/(?:t/(?<gate_token>{TOKEN_PCRE})/)?"
            f"(?<gate_media>{media_pcre})$")


def gate_cookie_token(cookie_header: str | None) -> str | None:
    """The token in a Cookie header's `gate` cookie. A header that carries the cookie
    more than once, or a value that cannot be a token, carries none: which of two
    cookies counts is not something to guess (nginx must decide on the same value)."""
    if cookie_header is None or f"{GATE_COOKIE}=" not in cookie_header:
        return None
    found: str | None = None
    for pair in cookie_header.split(";"):
        name, equals, value = pair.partition("=")
        if equals and name.strip() == GATE_COOKIE:
            if found is not None:
                return None
            found = value.strip()
    if (found is None or not 0 < len(found) <= _TOKEN_MAX_CHARS
            or not _TOKEN_CHARS.issuperset(found)):
        return None
    return found
