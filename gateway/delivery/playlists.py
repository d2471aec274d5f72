"""An origin's playlists rewritten for keys delivery: text in, text out, nothing fetched.

Media playlists: every media segment gets an absolute, public, cacheable URL naming its
key (urls.py) and an `#EXT-X-KEY:METHOD=AES-128,URI=…,IV=0x…` of its own just before
its EXTINF; the key is the one `KeySchedule` gives its media sequence number, so a
segment has the same URL, key and IV on every instance and every refresh.

What passes, what changes, what is refused:
- Kept as they are: EXT-X-MEDIA-SEQUENCE, EXT-X-DISCONTINUITY(-SEQUENCE),
  EXT-X-PROGRAM-DATE-TIME, EXT-X-DATERANGE, EXT-X-GAP, EXT-X-BITRATE, EXT-X-ENDLIST,
  EXT-X-PLAYLIST-TYPE, EXT-X-START, comments and tags this module does not know.
- fMP4: an EXT-X-MAP init section is served in the clear under `/media/{id}/c/…` (it
  holds codec configuration, no media); one that follows an encrypted segment gets an
  `#EXT-X-KEY:METHOD=NONE` first, or a player would take it as encrypted. fMP4
  segments are encrypted whole like MPEG-TS ones (AES-128, which RFC 8216 allows for
  fMP4; not SAMPLE-AES, not CENC/DRM): the player decrypts before demuxing (hls.js does;
  tests/delivery/test_players.py plays it with ffmpeg).
- WebVTT segments are served in the clear (subtitles are not what is sold, and not every
  player decrypts them).
- Low-latency HLS is dropped cleanly, leaving an ordinary live playlist: EXT-X-PART,
  EXT-X-PART-INF, EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT and EXT-X-SERVER-CONTROL go,
  with the tags of a segment not yet complete. Partial segments would each need their
  own encryption and URL, and blocking reloads do not survive a CDN that knows nothing
  of them; players fall back to regular latency.
- Refused (`UnsupportedPlaylist`): an origin's own EXT-X-KEY or EXT-X-SESSION-KEY other
  than METHOD=NONE (encrypted media is not encrypted again), EXT-X-BYTERANGE and
  EXT-X-MAP BYTERANGE (whole-file encryption changes every offset; a byte-range init
  would serve its whole file in the clear), I-frame playlists, EXT-X-SKIP delta updates,
  EXT-X-DEFINE variables, and any URI that is absolute, has a scheme, query or fragment,
  is percent-encoded, leaves the stream's root or is off the gate's allow-list.

Master playlists keep their variant and rendition URIs relative and as written (so a
playlist fetched under `/media/{id}/t/{token}/` passes the token to its variants), after
checking each resolves inside the stream; I-frame variants, EXT-X-SESSION-DATA with a
URI and EXT-X-CONTENT-STEERING are dropped (they name files or servers keys delivery
does not serve).

This is a line-based rewrite, not the `m3u8` library's parse and dump: a dump writes
only the tags the library models, in its own order, and loses unknown tags, comments
and the origin's exact attribute text; here every line not named above passes through
byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.delivery.keys import KeyId, KeySchedule, KeyWindow, segment_iv
from gateway.delivery.urls import MediaUrls, is_playlist_path, is_segment_path, key_uri

MIN_VERSION = 2  # the IV attribute of EXT-X-KEY
_VARIANT_TAGS = frozenset({"EXT-X-STREAM-INF", "EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"})
_MEDIA_TAGS = frozenset({"EXTINF", "EXT-X-TARGETDURATION"})
# Tags that belong to the next segment: dangling after the last URI, they are dropped.
_SEGMENT_TAGS = frozenset({"EXTINF", "EXT-X-DISCONTINUITY", "EXT-X-PROGRAM-DATE-TIME",
                           "EXT-X-GAP", "EXT-X-BITRATE", "EXT-X-MAP"})
_LOW_LATENCY_TAGS = frozenset({"EXT-X-PART", "EXT-X-PART-INF", "EXT-X-PRELOAD-HINT",
                               "EXT-X-RENDITION-REPORT", "EXT-X-SERVER-CONTROL"})
_REFUSED_TAGS = {
    "EXT-X-BYTERANGE": "byte-range segments",
    "EXT-X-I-FRAMES-ONLY": "an I-frame playlist",
    "EXT-X-SKIP": "a delta update (EXT-X-SKIP)",
    "EXT-X-DEFINE": "variable substitution (EXT-X-DEFINE)",
}
_DECIMAL = re.compile(r"[0-9]{1,20}")
_DURATION = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_ATTRIBUTE = re.compile(r'\s*([A-Z0-9-]+)=("[^"\r\n]*"|[^",]*)\s*')
_CLEAR_TYPES = frozenset({".vtt", ".webvtt"})


class UnsupportedPlaylist(ValueError):
    """The origin's playlist cannot be delivered with keys; the message says why."""


@dataclass(frozen=True, slots=True)
class RewrittenPlaylist:
    text: str
    # The keys the playlist names, oldest first; each must exist before it is served.
    key_ids: tuple[KeyId, ...]
    # Which of them may be created (StreamKeys.prepare); None for a master playlist.
    window: KeyWindow | None


@dataclass(frozen=True, slots=True)
class _Line:
    text: str  # as the origin wrote it, surrounding whitespace removed
    tag: str | None  # "EXTINF", "EXT-X-KEY", ...; None for a URI or a comment

    @property
    def value(self) -> str:
        return self.text.partition(":")[2]

    @property
    def is_uri(self) -> bool:
        return self.tag is None and not self.text.startswith("#")


def rewrite_playlist(text: str, *, stream_id: str, playlist_path: str, urls: MediaUrls,
                     rotation_seconds: float, token: str | None = None) -> RewrittenPlaylist:
    """The playlist at `playlist_path` (under the stream's origin) as keys delivery
    serves it, master or media. `token` is the path token it was asked with, if any."""
    lines = _read(text)
    tags = {line.tag for line in lines}
    if tags & _VARIANT_TAGS:
        if tags & _MEDIA_TAGS:
            raise UnsupportedPlaylist("both a master and a media playlist")
        return RewrittenPlaylist(_master(lines, playlist_path), (), None)
    if tags & _MEDIA_TAGS:
        return _media(lines, stream_id=stream_id, playlist_path=playlist_path, urls=urls,
                      rotation_seconds=rotation_seconds, token=token)
    raise UnsupportedPlaylist("neither a master nor a media playlist")


def resolve_uri(playlist_path: str, uri: str) -> str:
    """The path under the stream's root that `uri`, written in the playlist at
    `playlist_path`, names. Only relative paths are taken, and none that climbs out of
    the root: everything keys delivery serves is the stream's own."""
    if (not uri or _SCHEME.match(uri) or uri.startswith("/")
            or any(char in uri for char in "?#%\\")):
        raise UnsupportedPlaylist(f"not a relative path: {uri!r}")
    parts = playlist_path.split("/")[:-1]
    for part in uri.split("/"):
        if part == "..":
            if not parts:
                raise UnsupportedPlaylist(f"leaves the stream: {uri!r}")
            parts.pop()
        elif part == "":
            raise UnsupportedPlaylist(f"an empty path component: {uri!r}")
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _read(text: str) -> list[_Line]:
    raw_lines = text.split("\n")
    if raw_lines[0].strip() != "#EXTM3U":
        raise UnsupportedPlaylist("not an HLS playlist (no #EXTM3U first)")
    lines = []
    for raw in raw_lines[1:]:
        line = raw.strip()
        if not line:
            continue
        tag = line[1:].partition(":")[0] if line.startswith("#EXT") else None
        lines.append(_Line(line, tag))
    return lines


def _attributes(line: _Line) -> dict[str, str]:
    """An attribute list, each value as written (quoted strings keep their quotes)."""
    value, position, found = line.value, 0, {}
    while position < len(value):
        match = _ATTRIBUTE.match(value, position)
        if match is None or match.group(1) in found:
            raise UnsupportedPlaylist(f"a malformed attribute list: {line.text!r}")
        found[match.group(1)] = match.group(2)
        position = match.end()
        if position < len(value):
            if value[position] != ",":
                raise UnsupportedPlaylist(f"a malformed attribute list: {line.text!r}")
            position += 1
    return found


def _quoted_uri(line: _Line, attributes: dict[str, str]) -> str | None:
    uri = attributes.get("URI")
    if uri is None:
        return None
    if len(uri) < 2 or not uri.startswith('"') or not uri.endswith('"'):
        raise UnsupportedPlaylist(f"an unquoted URI: {line.text!r}")
    return uri[1:-1]


def _refuse_encryption(line: _Line) -> None:
    """An origin's EXT-X-KEY or EXT-X-SESSION-KEY passes (to be dropped: keys delivery
    writes its own) only when it says METHOD=NONE."""
    if _attributes(line).get("METHOD") != "NONE":
        raise UnsupportedPlaylist("the origin encrypts its media already")


def _master(lines: list[_Line], playlist_path: str) -> str:
    out = ["#EXTM3U"]
    variant_announced = False
    for line in lines:
        if line.is_uri:
            if not variant_announced:
                raise UnsupportedPlaylist(f"a URI no EXT-X-STREAM-INF announces: {line.text!r}")
            _check_playlist(playlist_path, line.text)
            variant_announced = False
        elif line.tag == "EXT-X-STREAM-INF":
            variant_announced = True
        elif line.tag == "EXT-X-MEDIA":
            uri = _quoted_uri(line, _attributes(line))
            if uri is not None:
                _check_playlist(playlist_path, uri)
        elif line.tag in ("EXT-X-I-FRAME-STREAM-INF", "EXT-X-CONTENT-STEERING"):
            continue
        elif line.tag == "EXT-X-SESSION-DATA":
            if "URI" in _attributes(line):
                continue
        elif line.tag == "EXT-X-SESSION-KEY":
            _refuse_encryption(line)
            continue
        elif line.tag in _REFUSED_TAGS:
            raise UnsupportedPlaylist(f"not supported: {_REFUSED_TAGS[line.tag]}")
        out.append(line.text)
    if variant_announced:
        raise UnsupportedPlaylist("an EXT-X-STREAM-INF without its URI")
    return "\n".join(out) + "\n"


def _check_playlist(playlist_path: str, uri: str) -> None:
    path = resolve_uri(playlist_path, uri)
    if not is_playlist_path(path):
        raise UnsupportedPlaylist(f"not a playlist keys delivery can serve: {uri!r}")


@dataclass(frozen=True, slots=True)
class _Header:
    target_duration_s: float
    media_sequence: int
    segments: int
    ended: bool


def _header(lines: list[_Line]) -> _Header:
    target_duration_s: float | None = None
    media_sequence = 0
    segments = 0
    ended = False
    for line in lines:
        if line.is_uri:
            segments += 1
        elif line.tag == "EXT-X-TARGETDURATION":
            if not _DURATION.fullmatch(line.value) or not float(line.value) > 0:
                raise UnsupportedPlaylist(f"a malformed target duration: {line.text!r}")
            target_duration_s = float(line.value)
        elif line.tag == "EXT-X-MEDIA-SEQUENCE":
            if segments or not _DECIMAL.fullmatch(line.value) or int(line.value) >= 2**64:
                raise UnsupportedPlaylist(f"a misplaced or malformed {line.text!r}")
            media_sequence = int(line.value)
        elif line.tag == "EXT-X-ENDLIST" or line.text == "#EXT-X-PLAYLIST-TYPE:VOD":
            ended = True
    if target_duration_s is None:
        raise UnsupportedPlaylist("a media playlist without EXT-X-TARGETDURATION")
    if media_sequence + segments > 2**64:
        raise UnsupportedPlaylist("media sequence numbers beyond 2^64")
    return _Header(target_duration_s, media_sequence, segments, ended)


def _media(lines: list[_Line], *, stream_id: str, playlist_path: str, urls: MediaUrls,
           rotation_seconds: float, token: str | None) -> RewrittenPlaylist:
    header = _header(lines)
    schedule = KeySchedule.of(rotation_seconds, header.target_duration_s)
    out = ["#EXTM3U"]
    has_version = False
    encrypted = False  # whether the EXT-X-KEY in effect, as written so far, is AES-128
    key_ids: dict[KeyId, None] = {}  # ordered set
    sequence = header.media_sequence
    block: list[_Line] = []  # the lines since the last segment's URI
    for line in lines:
        if line.tag in _LOW_LATENCY_TAGS:
            continue
        if line.tag in ("EXT-X-KEY", "EXT-X-SESSION-KEY"):
            _refuse_encryption(line)
            continue
        if line.tag in _REFUSED_TAGS:
            raise UnsupportedPlaylist(f"not supported: {_REFUSED_TAGS[line.tag]}")
        if line.tag in ("EXT-X-STREAM-INF", "EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"):
            raise UnsupportedPlaylist("master playlist tags in a media playlist")
        if line.tag == "EXT-X-VERSION":
            has_version = True
            line = _at_least_version(line)
        if not line.is_uri:
            block.append(line)
            continue
        path = resolve_uri(playlist_path, line.text)
        if not is_segment_path(path):
            raise UnsupportedPlaylist(f"not a segment keys delivery can serve: {line.text!r}")
        segment: list[str] = []
        key_at: int | None = None  # where this segment's EXT-X-KEY goes
        for tag_line in block:
            if tag_line.tag == "EXT-X-MAP":
                if encrypted:
                    segment.append("#EXT-X-KEY:METHOD=NONE")
                    encrypted = False
                segment.append(_clear_map(tag_line, stream_id, playlist_path, urls))
                if key_at is not None:  # a map after EXTINF: the key must follow it
                    key_at = len(segment)
                continue
            if tag_line.tag == "EXTINF":
                key_at = len(segment)
            segment.append(tag_line.text)
        if key_at is None:
            raise UnsupportedPlaylist(f"a segment without EXTINF: {line.text!r}")
        if _is_clear(path):
            if encrypted:
                segment.insert(key_at, "#EXT-X-KEY:METHOD=NONE")
                encrypted = False
            segment.append(urls.clear_file(stream_id, path))
        else:
            key_id = schedule.key_id(sequence)
            key_ids[key_id] = None
            iv = segment_iv(stream_id, key_id, path)
            segment.insert(key_at, f'#EXT-X-KEY:METHOD=AES-128,'
                                   f'URI="{key_uri(stream_id, key_id, token)}",'
                                   f'IV=0x{iv.hex().upper()}')
            encrypted = True
            segment.append(urls.encrypted_segment(stream_id, key_id, path))
        out.extend(segment)
        block = []
        sequence += 1
    # What follows the last URI: playlist tags (EXT-X-ENDLIST) stay; the tags of a
    # segment still being written (low-latency HLS lists those early) go.
    out.extend(line.text for line in block if line.tag not in _SEGMENT_TAGS)
    if not has_version:
        out.insert(1, f"#EXT-X-VERSION:{MIN_VERSION}")
    last_sequence = max(header.media_sequence, sequence - 1)
    window = schedule.window(header.media_sequence, last_sequence, ended=header.ended)
    return RewrittenPlaylist("\n".join(out) + "\n", tuple(key_ids), window)


def drop_segments_before(text: str, first_sequence: int) -> str:
    """The media playlist `text` (as the origin wrote it) without its segments numbered
    below `first_sequence`, for a live window that names keys that cannot be made any
    more: EXT-X-MEDIA-SEQUENCE says where it now starts, EXT-X-DISCONTINUITY-SEQUENCE
    counts the discontinuities that went, and the init section in effect (EXT-X-MAP) is
    carried to the first segment kept. Every other line passes as it is."""
    lines = _read(text)
    header = _header(lines)
    discontinuities = 0
    kept: list[str] = []
    sequence = header.media_sequence
    map_in_effect: str | None = None
    kept_any = False
    block: list[_Line] = []
    for line in lines:
        if line.tag == "EXT-X-DISCONTINUITY-SEQUENCE":
            if not _DECIMAL.fullmatch(line.value):
                raise UnsupportedPlaylist(f"a malformed {line.text!r}")
            discontinuities += int(line.value)
            continue
        if line.tag == "EXT-X-MEDIA-SEQUENCE":
            continue
        if not line.is_uri:
            block.append(line)
            continue
        if sequence < first_sequence:
            for dropped in block:
                if dropped.tag == "EXT-X-DISCONTINUITY":
                    discontinuities += 1
                elif dropped.tag == "EXT-X-MAP":
                    map_in_effect = dropped.text
                elif dropped.tag not in _SEGMENT_TAGS:
                    kept.append(dropped.text)  # the playlist's own tags, comments
        else:
            if not kept_any and map_in_effect is not None and not any(
                    tag_line.tag == "EXT-X-MAP" for tag_line in block):
                kept.append(map_in_effect)
            kept_any = True
            kept.extend(tag_line.text for tag_line in block)
            kept.append(line.text)
        block = []
        sequence += 1
    kept.extend(line.text for line in block)
    head = ["#EXTM3U", f"#EXT-X-MEDIA-SEQUENCE:{max(first_sequence, header.media_sequence)}"]
    if discontinuities:
        head.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities}")
    return "\n".join(head + kept) + "\n"


def _at_least_version(line: _Line) -> _Line:
    if not _DECIMAL.fullmatch(line.value):
        raise UnsupportedPlaylist(f"a malformed version: {line.text!r}")
    if int(line.value) >= MIN_VERSION:
        return line
    return _Line(f"#EXT-X-VERSION:{MIN_VERSION}", "EXT-X-VERSION")


def _clear_map(line: _Line, stream_id: str, playlist_path: str, urls: MediaUrls) -> str:
    attributes = _attributes(line)
    if "BYTERANGE" in attributes:
        raise UnsupportedPlaylist("not supported: a byte-range init section")
    uri = _quoted_uri(line, attributes)
    if uri is None:
        raise UnsupportedPlaylist(f"an EXT-X-MAP without URI: {line.text!r}")
    path = resolve_uri(playlist_path, uri)
    if not is_segment_path(path):
        raise UnsupportedPlaylist(f"not an init section keys delivery can serve: {uri!r}")
    attributes["URI"] = f'"{urls.clear_file(stream_id, path)}"'
    return "#EXT-X-MAP:" + ",".join(f"{name}={value}" for name, value in attributes.items())


def _is_clear(path: str) -> bool:
    dot = path.rfind(".")
    return path[dot:].lower() in _CLEAR_TYPES

