"""Where a stream's bytes come from. One class per kind of origin in the catalog:

- `DirectoryOrigin`: a local directory; files read off the loop into the memory cache,
  or sent with sendfile when too big to cache.
- `LiveLoopOrigin`: a local VOD playlist played as an endless live stream whose window
  follows the clock. It is the bundled demo, and works with no ffmpeg and no server.
- `HttpOrigin`: an upstream server, through the shared client, single flight and cache.

Playlists are never rewritten: relative URIs keep working under both the cookie form and
the path-token form of the gate's URLs. Keys delivery (gateway/delivery/service.py)
reads whole objects through the same caches and single-flight fetches (`Origin.read`),
and rewrites and encrypts them itself.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import m3u8
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.clock import Clock
from gateway.errors import MediaNotFound, UpstreamFailed, UpstreamTimeout
from gateway.gate.access import AccessGrant
from gateway.gate.cache import LocalFiles, SharedFetch, UpstreamFetcher, upstream_timeout
from gateway.gate.paths import MediaKind, MediaPath, upstream_query
from gateway.settings import SERVER_NAME

PLAYLIST_CACHE_CONTROL = "private, no-cache"
SEGMENT_MAX_AGE_S = 3600  # segment names are never reused for other content
LIVE_PLAYLIST_CACHE_MS = 1000  # a live playlist may be a second old
SEGMENT_CACHE_MS = 10 * 60 * 1000


def segment_cache_control(grant: AccessGrant, now_ms: int, lifetime_s: int) -> str:
    # Never let a browser keep a segment longer than the viewer's access lasts.
    remaining_s = max(0, (grant.expires_at_ms - now_ms) // 1000)
    return f"private, max-age={min(lifetime_s, remaining_s)}"


_FULL_SEGMENT_CACHE_CONTROL = f"private, max-age={SEGMENT_MAX_AGE_S}"


def _cache_control(media: MediaPath, grant: AccessGrant, now_ms: int) -> str:
    """What a browser is told for a file of a directory or an HTTP origin."""
    if media.kind is MediaKind.PLAYLIST:
        return PLAYLIST_CACHE_CONTROL
    if grant.expires_at_ms - now_ms >= SEGMENT_MAX_AGE_S * 1000:
        return _FULL_SEGMENT_CACHE_CONTROL  # access outlasts it: no string to build
    return segment_cache_control(grant, now_ms, SEGMENT_MAX_AGE_S)


Headers = CIMultiDictProxy[str]


@functools.lru_cache(maxsize=4096)
def media_headers(content_type: str, cache_control: str, from_memory: bool = False
                  ) -> Headers:
    """The headers of a media response, built once per combination: every viewer of a
    stream gets the same few. From memory, byte ranges are served too."""
    headers = CIMultiDict({
        hdrs.CONTENT_TYPE: content_type, hdrs.CACHE_CONTROL: cache_control,
        # What middlewares.finish_headers gives every answer, here too: a response
        # streamed from the origin is sent before the middleware sees it.
        "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
        hdrs.SERVER: SERVER_NAME})
    if from_memory:
        headers[hdrs.ACCEPT_RANGES] = "bytes"
    return CIMultiDictProxy(headers)


class Origin(abc.ABC):
    @abc.abstractmethod
    async def serve(self, request: web.Request, media: MediaPath,
                    grant: AccessGrant) -> web.StreamResponse: ...

    @abc.abstractmethod
    async def read(self, media: MediaPath) -> bytes:
        """The whole object, for keys delivery, which rewrites or encrypts it: from the
        same caches and single-flight fetches `serve` uses, with no query (keys delivery
        passes no LL-HLS directive on). Raises MediaNotFound, UpstreamFailed or
        UpstreamTimeout."""

    def cached(self, request: web.Request, media: MediaPath, grant: AccessGrant,
               now_ms: int) -> web.Response | None:
        """The response, when the object is in memory: called first, on every request,
        so it neither awaits nor builds anything but the response. None: `serve()`.
        `now_ms`: the clock's time, read once per request by the gate."""
        return None


class DirectoryOrigin(Origin):
    """A local directory, e.g. where a packager on this host writes a live stream.
    Files are served from memory once read (playlists are re-read after a second)."""

    def __init__(self, directory: Path, files: LocalFiles, clock: Clock) -> None:
        # Joined as text: media paths are safe to join by construction (paths.py), and a
        # pathlib join per segment request costs more than the rest of the lookup.
        self._prefix = str(directory) + "/"
        self._files = files
        self._memory = files.memory
        self._memory_prefix = files.key(self._prefix)
        self._clock = clock

    def cached(self, request: web.Request, media: MediaPath, grant: AccessGrant,
               now_ms: int) -> web.Response | None:
        cached = self._memory.get(self._memory_prefix + media.path, now_ms)
        if cached is None:
            return None
        return bytes_response(request, cached.body, media_headers(
            media.content_type, _cache_control(media, grant, now_ms), True))

    async def serve(self, request: web.Request, media: MediaPath,
                    grant: AccessGrant) -> web.StreamResponse:
        cache_for_ms = (LIVE_PLAYLIST_CACHE_MS if media.kind is MediaKind.PLAYLIST
                        else SEGMENT_CACHE_MS)
        return await _local_file(request, self._files, self._prefix + media.path, media,
                                 _cache_control(media, grant, self._clock()), cache_for_ms)

    async def read(self, media: MediaPath) -> bytes:
        cache_for_ms = (LIVE_PLAYLIST_CACHE_MS if media.kind is MediaKind.PLAYLIST
                        else SEGMENT_CACHE_MS)
        return await _read_local(self._files, self._prefix + media.path, cache_for_ms)


@dataclass(frozen=True, slots=True)
class _LoopSegment:
    file: str
    duration_s: float


# Where the loop's count of segments and wraps starts. Not 1970: hls.js (1.7) walks an
# array indexed by discontinuity sequence number on every playlist it loads, so the
# ~224 million wraps of an 8 s loop since 1970 cost each viewer's browser seconds of
# CPU per playlist (a stalled picture on a slow machine). From here the count is
# ~11,000 a day. Fixed, so every instance and restart publishes the same numbers.
LOOP_EPOCH_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z


class LiveLoopOrigin(Origin):
    """Plays a VOD playlist's segments round and round as a live stream.

    Segment k of the live stream (counted from LOOP_EPOCH_MS) is source segment k mod
    n, published as `<k><ext>`; a discontinuity marks every wrap-around, since the
    timestamps start over.
    """

    WINDOW_SEGMENTS = 5

    def __init__(self, directory: Path, source_playlist: str, live_playlist: str,
                 files: LocalFiles, clock: Clock) -> None:
        self._files = files
        source = m3u8.load(str(directory / source_playlist))
        if source.is_variant or not source.segments:
            raise ValueError(f"{directory / source_playlist}: not a media playlist")
        self._segments = [_LoopSegment(str(directory / segment.uri), float(segment.duration))
                          for segment in source.segments]
        extensions = {Path(segment.uri).suffix for segment in source.segments}
        if len(extensions) != 1:
            raise ValueError(f"{directory / source_playlist}: mixed segment types")
        self._extension = extensions.pop()
        self._segment_name = re.compile(rf"([0-9]{{1,15}}){re.escape(self._extension)}")
        self._live_playlist = live_playlist
        self._cycle_s = sum(segment.duration_s for segment in self._segments)
        self._starts_s = [sum(s.duration_s for s in self._segments[:i])
                          for i in range(len(self._segments))]
        self._target_duration_s = math.ceil(max(s.duration_s for s in self._segments))
        self._clock = clock
        # The playlist changes when a segment completes, not per request: keep the last.
        self._rendered: tuple[int, str] = (-1, "")

    def playlist(self, now_ms: int) -> str:
        count = len(self._segments)
        now_s = max(0, now_ms - LOOP_EPOCH_MS) / 1000
        cycles, into_cycle_s = divmod(now_s, self._cycle_s)
        current = int(cycles) * count + max(
            i for i, start in enumerate(self._starts_s) if start <= into_cycle_s)
        # The newest segment listed is the last one complete by now.
        last = max(current - 1, self.WINDOW_SEGMENTS - 1)
        if self._rendered[0] == last:
            return self._rendered[1]
        first = last - self.WINDOW_SEGMENTS + 1
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self._target_duration_s}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            # Wraps before `first` whose discontinuity tag has left the window.
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{(first - 1) // count if first > 0 else 0}",
        ]
        for number in range(first, last + 1):
            if number > 0 and number % count == 0:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXTINF:{self._segments[number % count].duration_s:.3f},")
            lines.append(f"{number}{self._extension}")
        text = "\n".join(lines) + "\n"
        self._rendered = (last, text)
        return text

    async def serve(self, request: web.Request, media: MediaPath,
                    grant: AccessGrant) -> web.StreamResponse:
        now_ms = self._clock()
        if media.path == self._live_playlist:
            return web.Response(body=self.playlist(now_ms).encode(), headers=media_headers(
                media.content_type, PLAYLIST_CACHE_CONTROL))
        match = self._segment_name.fullmatch(media.path)
        if match is None:
            raise MediaNotFound()
        segment = self._segments[int(match.group(1)) % len(self._segments)]
        # A live segment lives as long as it stays in the window.
        lifetime_s = math.ceil(self.WINDOW_SEGMENTS * self._target_duration_s)
        return await _local_file(request, self._files, segment.file, media,
                                 segment_cache_control(grant, now_ms, lifetime_s),
                                 SEGMENT_CACHE_MS)

    async def read(self, media: MediaPath) -> bytes:
        if media.path == self._live_playlist:
            return self.playlist(self._clock()).encode()
        match = self._segment_name.fullmatch(media.path)
        if match is None:
            raise MediaNotFound()
        segment = self._segments[int(match.group(1)) % len(self._segments)]
        return await _read_local(self._files, segment.file, SEGMENT_CACHE_MS)


class HttpOrigin(Origin):
    def __init__(self, base_url: str, fetcher: UpstreamFetcher, client: aiohttp.ClientSession,
                 clock: Clock, timeout_seconds: int) -> None:
        self._base = URL(base_url)
        self._base_text = base_url
        self._fetcher = fetcher
        self._memory = fetcher.cache
        self._client = client
        self._clock = clock
        self._timeout = upstream_timeout(timeout_seconds)

    def _url(self, key: str) -> URL:
        url = URL(key, encoded=True)
        # Belt and braces: the safe-path rules make this impossible, keep it impossible.
        if url.origin() != self._base.origin() or not url.path.startswith(self._base.path):
            raise UpstreamFailed()
        return url

    def _key(self, request: web.Request, media: MediaPath) -> str:
        """The upstream URL as text is the cache key: no URL object on a cache hit. The
        path and the _HLS_ values are URL-safe by construction (paths.py)."""
        if "?" not in request.raw_path:  # most requests: no query to parse
            return self._base_text + media.path
        query = upstream_query(request.query)
        return self._base_text + media.path + ("?" + urlencode(sorted(query.items()))
                                               if query else "")

    def cached(self, request: web.Request, media: MediaPath, grant: AccessGrant,
               now_ms: int) -> web.Response | None:
        cached = self._memory.get(self._key(request, media), now_ms)
        if cached is None:
            return None
        if cached.status != 200:  # a name the origin lacks, remembered briefly
            raise MediaNotFound()
        return bytes_response(request, cached.body, media_headers(
            media.content_type, _cache_control(media, grant, now_ms), True))

    async def serve(self, request: web.Request, media: MediaPath,
                    grant: AccessGrant) -> web.StreamResponse:
        now_ms = self._clock()
        response = self.cached(request, media, grant, now_ms)
        if response is not None:
            return response
        key = self._key(request, media)
        cache_for_ms = (LIVE_PLAYLIST_CACHE_MS if media.kind is MediaKind.PLAYLIST
                        else SEGMENT_CACHE_MS)
        shared = self._fetcher.fetch(key, self._url(key), cache_for_ms=cache_for_ms)
        if byte_range(request.headers.get(hdrs.RANGE)) is not None:
            # A range of an object not in the cache: wait for the shared fetch of the
            # whole object (one upstream request, however many ranges are asked for),
            # then cut the range from it.
            return bytes_response(request, await _whole(shared), media_headers(
                media.content_type, _cache_control(media, grant, self._clock()), True))
        headers = media_headers(media.content_type, _cache_control(media, grant, now_ms))
        return await _stream_shared(request, shared, headers)

    async def read(self, media: MediaPath) -> bytes:
        key = self._base_text + media.path
        cached = self._memory.get(key, self._clock())
        if cached is not None:
            if cached.status != 200:
                raise MediaNotFound()
            return cached.body
        cache_for_ms = (LIVE_PLAYLIST_CACHE_MS if media.kind is MediaKind.PLAYLIST
                        else SEGMENT_CACHE_MS)
        shared = self._fetcher.fetch(key, self._url(key), cache_for_ms=cache_for_ms)
        # Shielded: a reader giving up must not cancel what the fetch's other readers
        # (and the fetch itself) wait on.
        return await asyncio.shield(_whole(shared))


async def _local_file(request: web.Request, files: LocalFiles, file: str, media: MediaPath,
                      cache_control: str, cache_for_ms: int) -> web.StreamResponse:
    body = await files.read(file, cache_for_ms)
    if body is None:  # too big for the cache: sendfile, which also does ranges
        return web.FileResponse(file, headers=media_headers(media.content_type, cache_control))
    return bytes_response(request, body, media_headers(media.content_type, cache_control,
                                                        True))


async def _read_local(files: LocalFiles, file: str, cache_for_ms: int) -> bytes:
    body = await files.read(file, cache_for_ms)
    if body is not None:
        return body
    try:  # too big for the cache: read it whole, off the loop
        return await asyncio.to_thread(Path(file).read_bytes)
    except OSError:
        raise MediaNotFound() from None


async def _whole(shared: SharedFetch) -> bytes:
    await shared.headers_ready  # raises UpstreamFailed / UpstreamTimeout
    if shared.status in (404, 410):
        raise MediaNotFound()
    if shared.status != 200:
        raise UpstreamFailed()
    return b"".join([chunk async for chunk in shared.body()])


async def _stream_shared(request: web.Request, shared: SharedFetch,
                         headers: Headers) -> web.StreamResponse:
    # Shielded: a viewer hanging up must not cancel the future the other viewers of
    # this fetch (and the fetch itself) still wait on.
    await asyncio.shield(shared.headers_ready)  # raises UpstreamFailed / UpstreamTimeout
    if shared.status in (404, 410):
        raise MediaNotFound()
    if shared.status != 200:
        raise UpstreamFailed()
    response = web.StreamResponse(headers=headers)
    if shared.content_length is not None:
        response.content_length = shared.content_length
    await response.prepare(request)
    try:
        async for chunk in shared.body():
            await response.write(chunk)
    except (UpstreamFailed, UpstreamTimeout):
        # Too late for an error status: cut the connection so the player sees a
        # truncated response and retries, rather than a short "complete" one.
        response.force_close()
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


# One range, in ASCII digits of a sane length. Anything else (several ranges, other
# units, Unicode digits, thousands of digits) is ignored, as RFC 9110 allows: the
# whole object, 200.
_RANGE = re.compile(r"bytes=([0-9]{0,15})-([0-9]{0,15})")


def byte_range(header: str | None) -> tuple[str, str] | None:
    """A Range header we serve, as its (first, last) text; None when we ignore it."""
    match = None if header is None else _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    return match.group(1), match.group(2)


def bytes_response(request: web.Request, body: bytes, headers: Headers) -> web.Response:
    """A body from memory (`headers` from `media_headers`, from memory), honouring a
    single byte range like FileResponse does."""
    range_header = request.headers.get(hdrs.RANGE)
    asked = None if range_header is None else byte_range(range_header)
    if asked is None:
        return web.Response(body=body, headers=headers)
    size = len(body)
    first, last = asked
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        unsatisfiable = CIMultiDict(headers)
        del unsatisfiable[hdrs.ACCEPT_RANGES]
        unsatisfiable[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        return web.Response(status=416, headers=unsatisfiable)
    partial = CIMultiDict(headers)
    partial[hdrs.CONTENT_RANGE] = f"bytes {start}-{end}/{size}"
    return web.Response(status=206, body=body[start:end + 1], headers=partial)
