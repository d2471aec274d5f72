"""The URL grammar of keys delivery, writing and reading, in one place.

    /media/{streamId}/{path}.m3u8                  a playlist (rewritten); public
    /media/{streamId}/t/{token}/{path}.m3u8        the same for players that send no
                                                   cookies: relative variant URIs
                                                   inherit the token, key URIs carry it
    /media/{streamId}/k/{keyId}/{tag}/{path}       a segment encrypted under `keyId`
    /media/{streamId}/c/{tag}/{path}               a file served in the clear (fMP4 init
                                                   sections, WebVTT)
    /keys/{streamId}/{keyId}                       the key; only with access (cookie)
    /keys/{streamId}/t/{token}/{keyId}             the key; only with access (path token)

`{path}` is the file's path under the stream's origin, by the gate's allow-list
(gate/paths.py). Segment and clear URLs are written only by the playlist rewriter and
carry a `tag`, an HMAC of what they name under the service's secret, so the service
serves only URLs it wrote itself: without it, anyone who kept an old key could ask for
today's segments under that old key's id (`/media/s/k/{old}/...`) and decrypt them, and
anyone at all could fetch a media segment through the clear route. A playlist's first
path component is never `k`, `c` or `t`, so the forms cannot be confused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from gateway.delivery.keys import KeyId
from gateway.errors import InvalidRequest
from gateway.gate.paths import MediaKind, MediaPath, media_path
from gateway.gate.urls import TOKEN_PCRE

MEDIA_PREFIX = "/media/"
KEYS_PREFIX = "/keys/"
# (route name, pattern): one route each, the rest is read by `MediaUrls.target` and
# `key_target`.
ROUTES = (("media", "/media/{stream_id}/{rest:.+}"),
          ("keys", "/keys/{stream_id}/{rest:.+}"))
ENCRYPTED = "k"
CLEAR = "c"
TOKEN = "t"
RESERVED_FIRST_COMPONENTS = frozenset({ENCRYPTED, CLEAR, TOKEN})
TAG_CHARS = 16  # 96 bits of HMAC-SHA256, base64url: not to be guessed one request at a time
_TAG = re.compile(rf"[A-Za-z0-9_-]{{{TAG_CHARS}}}")
_TOKEN = re.compile(TOKEN_PCRE)
MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class EncryptedSegment:
    key_id: KeyId
    media: MediaPath  # the origin's file, to be encrypted under `key_id`


@dataclass(frozen=True, slots=True)
class ClearFile:
    media: MediaPath  # the origin's file, served as it is


@dataclass(frozen=True, slots=True)
class PlaylistFile:
    media: MediaPath  # the origin's playlist, to be rewritten
    token: str | None  # the path token, for the key URIs it will name


MediaTarget = EncryptedSegment | ClearFile | PlaylistFile


@dataclass(frozen=True, slots=True)
class KeyTarget:
    key_id: KeyId
    token: str | None  # the path-token form's token; None in the cookie form


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def is_playlist_path(path: str) -> bool:
    """Whether `path` (under the stream) can be served as a playlist under /media/."""
    return _playlist(path) is not None


def is_segment_path(path: str) -> bool:
    """Whether `path` (under the stream) can be served as a segment or init section."""
    return _segment(path) is not None


def playback_urls(stream_id: str, playlist: str, token: str) -> dict[str, str]:
    """The stream's playlist in both forms, as check-access names them in keys delivery
    (the gate's are gate/urls.py:playback_urls)."""
    return {"playbackUrl": playlist_url(stream_id, playlist),
            "tokenPlaybackUrl": playlist_url(stream_id, playlist, token)}


def keys_path(stream_id: str) -> str:
    """Every key of one stream is under this: the gate cookie's Path in keys delivery.
    The media needs no cookie, so neither a CDN nor its cache key ever sees one."""
    return f"{KEYS_PREFIX}{stream_id}/"


def playlist_url(stream_id: str, path: str, token: str | None = None) -> str:
    if token is None:
        return f"{MEDIA_PREFIX}{stream_id}/{path}"
    return f"{MEDIA_PREFIX}{stream_id}/{TOKEN}/{_checked_token(token)}/{path}"


def key_uri(stream_id: str, key_id: KeyId, token: str | None = None) -> str:
    if token is None:
        return f"{KEYS_PREFIX}{stream_id}/{key_id}"
    return f"{KEYS_PREFIX}{stream_id}/{TOKEN}/{_checked_token(token)}/{key_id}"


def _checked_token(token: str) -> str:
    # It goes into a quoted playlist attribute: a quote or a line break would let the
    # request that carried it write the playlist.
    if not is_token(token):
        raise ValueError("not a token")
    return token


def key_target(rest: str) -> KeyTarget | None:
    """What a `/keys/{streamId}/{rest}` request names, or None when it is not a key URI
    (the stream id is the route's; access is checked by the caller)."""
    token: str | None = None
    if rest.startswith(f"{TOKEN}/"):
        token, slash, rest = rest[2:].partition("/")
        if not slash or not is_token(token):
            return None
    key_id = KeyId.parse(rest)
    return None if key_id is None else KeyTarget(key_id, token)


class MediaUrls:
    """Writes and reads `/media/` URLs; holds the secret their tags are made with."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the URL secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def encrypted_segment(self, stream_id: str, key_id: KeyId, path: str) -> str:
        tag = self._tag(ENCRYPTED, stream_id, str(key_id), path)
        return f"{MEDIA_PREFIX}{stream_id}/{ENCRYPTED}/{key_id}/{tag}/{path}"

    def clear_file(self, stream_id: str, path: str) -> str:
        tag = self._tag(CLEAR, stream_id, path)
        return f"{MEDIA_PREFIX}{stream_id}/{CLEAR}/{tag}/{path}"

    def target(self, stream_id: str, rest: str) -> MediaTarget | None:
        """What a `/media/{streamId}/{rest}` request names (`rest` as the router decoded
        it), or None when it names nothing this service wrote: a segment or clear URL
        whose tag does not match, a key id out of grammar, a path off the allow-list."""
        first, slash, after = rest.partition("/")
        if first == ENCRYPTED and slash:
            key_text, _, after = after.partition("/")
            tag, _, path = after.partition("/")
            key_id = KeyId.parse(key_text)
            media = _segment(path)
            if key_id is None or media is None or not self._tag_matches(
                    tag, ENCRYPTED, stream_id, key_text, path):
                return None
            return EncryptedSegment(key_id, media)
        if first == CLEAR and slash:
            tag, _, path = after.partition("/")
            media = _segment(path)
            if media is None or not self._tag_matches(tag, CLEAR, stream_id, path):
                return None
            return ClearFile(media)
        token: str | None = None
        if first == TOKEN and slash:
            token, _, rest = after.partition("/")
            if not is_token(token):
                return None
        media = _playlist(rest)
        return None if media is None else PlaylistFile(media, token)

    def _tag(self, *parts: str) -> str:
        # NUL cannot occur in a stream id, key id or allow-listed path: parts never run
        # into each other.
        message = "\0".join(parts).encode()
        digest = hmac.digest(self._secret, message, hashlib.sha256)
        return base64.urlsafe_b64encode(digest[:TAG_CHARS * 3 // 4]).decode()

    def _tag_matches(self, tag: str, *parts: str) -> bool:
        return _TAG.fullmatch(tag) is not None and hmac.compare_digest(tag, self._tag(*parts))


def _media(path: str) -> MediaPath | None:
    try:
        return media_path(path)
    except InvalidRequest:
        return None


def _playlist(path: str) -> MediaPath | None:
    media = _media(path)
    if (media is None or media.kind is not MediaKind.PLAYLIST
            or path.split("/", 1)[0] in RESERVED_FIRST_COMPONENTS):
        return None
    return media


def _segment(path: str) -> MediaPath | None:
    # Key files are on the allow-list for the gate (an origin's own keys); here they
    # would be neither media nor ours.
    media = _media(path)
    if (media is None or media.kind is not MediaKind.SEGMENT
            or path.lower().endswith(".key")):
        return None
    return media
