"""What a request may ask the origin for.

The path is checked against an allow-list, not cleaned: segments of letters, digits, `_`,
`-` and `.` that never start with a dot, separated by `/`. That leaves no way to write
`..`, an absolute path, a scheme, a backslash, a NUL or a percent sign, whatever the
encoding the client tried. Only media file types are served.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from gateway.errors import InvalidRequest

_SAFE_PATH = re.compile(
    r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}/){0,8}[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
)


class MediaKind(Enum):
    PLAYLIST = "playlist"
    SEGMENT = "segment"  # media segments, init segments, keys, subtitles


CONTENT_TYPES: dict[str, tuple[str, MediaKind]] = {
    ".m3u8": ("application/vnd.apple.mpegurl", MediaKind.PLAYLIST),
    ".ts": ("video/mp2t", MediaKind.SEGMENT),
    ".m4s": ("video/iso.segment", MediaKind.SEGMENT),
    ".mp4": ("video/mp4", MediaKind.SEGMENT),
    ".m4a": ("audio/mp4", MediaKind.SEGMENT),
    ".m4v": ("video/mp4", MediaKind.SEGMENT),
    ".aac": ("audio/aac", MediaKind.SEGMENT),
    ".mp3": ("audio/mpeg", MediaKind.SEGMENT),
    ".vtt": ("text/vtt", MediaKind.SEGMENT),
    ".webvtt": ("text/vtt", MediaKind.SEGMENT),
    ".key": ("application/octet-stream", MediaKind.SEGMENT),
}


@dataclass(frozen=True, slots=True)
class MediaPath:
    path: str  # relative to the origin, safe to join
    content_type: str
    kind: MediaKind


def media_path(raw: str) -> MediaPath:
    if len(raw) > 1024:  # before the cache, which then holds 4 MB at most
        raise InvalidRequest(detail="media path")
    media = _checked(raw)
    if isinstance(media, str):
        raise InvalidRequest(detail=media)
    return media


# Every viewer of a stream asks for the same few names: check each name once. (A
# refusal is remembered too; it is as cheap to keep as to recompute.)
@functools.lru_cache(maxsize=4096)
def _checked(raw: str) -> MediaPath | str:
    """The media path, or why it is refused."""
    if not _SAFE_PATH.fullmatch(raw):
        return "media path"
    dot = raw.rfind(".")
    known = CONTENT_TYPES.get(raw[dot:].lower()) if dot > raw.rfind("/") else None
    if known is None:
        return "not a media file type"
    return MediaPath(raw, known[0], known[1])


def media_path_pcre(kind: MediaKind) -> str:
    """The allow-list of `media_path` as one PCRE for paths of one kind, for nginx
    (gateway nginx-config): it matches exactly the paths `media_path` accepts."""
    extensions = "|".join(re.escape(extension[1:]) for extension, (_, known_kind)
                          in CONTENT_TYPES.items() if known_kind is kind)
    # Lookaheads for the extension and the length, then the allow-list itself.
    return rf"(?=.*\.(?i:{extensions})$)(?=.{{1,1024}}$){_SAFE_PATH.pattern}"


def upstream_query(query: Mapping[str, str]) -> dict[str, str]:
    """Low-latency HLS delivery directives pass through; anything else stays here."""
    return {
        key: value for key, value in query.items()
        if key.startswith("_HLS_") and len(key) <= 16 and re.fullmatch(r"[A-Za-z0-9._-]{1,32}",
                                                                        value)
    }
