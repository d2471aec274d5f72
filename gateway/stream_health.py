"""Each stream's health for the operator: is its origin answering, and how old is its
newest segment (a live stream whose newest segment keeps ageing has stopped).

Looked at when the console asks, at most every few seconds per stream, with a short
timeout: the console must not wait on a dead origin, and an idle service must not poll
origins nobody is looking at. The gate's own traffic is left alone.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import aiohttp
import m3u8
from yarl import URL

from gateway.catalog import Catalog, Stream
from gateway.clock import Clock

CHECK_TIMEOUT_S = 1.5
RECHECK_AFTER_MS = 10_000


@dataclass(frozen=True, slots=True)
class StreamHealth:
    stream_id: str
    up: bool
    newest_segment_age_s: float | None  # None when the origin does not say
    checked_at_ms: int
    problem: str = ""  # for the operator, when down: what failed


class StreamHealthMonitor:
    def __init__(self, catalog: Catalog, client: aiohttp.ClientSession, clock: Clock) -> None:
        self._catalog = catalog
        self._client = client
        self._clock = clock
        self._last: dict[str, StreamHealth] = {}

    async def all(self) -> list[StreamHealth]:
        return list(await asyncio.gather(*(self._one(stream) for stream in self._catalog)))

    async def _one(self, stream: Stream) -> StreamHealth:
        now_ms = self._clock()
        last = self._last.get(stream.stream_id)
        if last is not None and now_ms - last.checked_at_ms < RECHECK_AFTER_MS:
            return last
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                age_s = await self._newest_segment_age_s(stream, now_ms)
            health = StreamHealth(stream.stream_id, True, age_s, now_ms)
        except TimeoutError:
            health = StreamHealth(stream.stream_id, False, None, now_ms, "timeout")
        except (OSError, aiohttp.ClientError, ValueError) as exc:
            health = StreamHealth(stream.stream_id, False, None, now_ms,
                                  str(exc)[:200] or type(exc).__name__)
        self._last[stream.stream_id] = health
        return health

    async def _newest_segment_age_s(self, stream: Stream, now_ms: int) -> float | None:
        if stream.loop_source is not None and stream.origin_dir is not None:
            return _loop_age_s(str(stream.origin_dir / stream.loop_source), now_ms)
        if stream.origin_dir is not None:
            return await asyncio.to_thread(_directory_age_s, stream.origin_dir / stream.playlist)
        assert stream.origin_url is not None
        return await self._http_age_s(URL(stream.origin_url) / stream.playlist, now_ms)

    async def _http_age_s(self, playlist_url: URL, now_ms: int) -> float | None:
        playlist = await self._fetch_playlist(playlist_url)
        if playlist.is_variant and playlist.playlists:
            playlist_url = playlist_url.join(URL(playlist.playlists[0].uri))
            playlist = await self._fetch_playlist(playlist_url)
        if not playlist.segments:
            raise ValueError("playlist has no segments")
        newest = playlist.segments[-1]
        # Carried forward from the last EXT-X-PROGRAM-DATE-TIME by the parser.
        started = newest.current_program_date_time
        if started is not None:
            ended_s = float(started.timestamp()) + float(newest.duration or 0)
            return max(0.0, now_ms / 1000 - ended_s)
        async with self._client.head(playlist_url.join(URL(newest.uri)),
                                     allow_redirects=False) as response:
            modified = response.headers.get("Last-Modified")
        if response.status >= 400:
            raise ValueError(f"newest segment: HTTP {response.status}")
        if modified is None:
            return None
        return max(0.0, now_ms / 1000 - email.utils.parsedate_to_datetime(modified).timestamp())

    async def _fetch_playlist(self, url: URL) -> m3u8.M3U8:
        async with self._client.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"playlist: HTTP {response.status}")
            text = await response.text()
        return m3u8.loads(text)


def _directory_age_s(playlist_file: Path) -> float | None:
    playlist = m3u8.load(str(playlist_file))
    if playlist.is_variant and playlist.playlists:
        playlist_file = playlist_file.parent / playlist.playlists[0].uri
        playlist = m3u8.load(str(playlist_file))
    if not playlist.segments:
        raise ValueError("playlist has no segments")
    newest = playlist_file.parent / playlist.segments[-1].uri
    return max(0.0, time.time() - float(newest.stat().st_mtime))


@cache
def _loop_durations_s(source_playlist: str) -> tuple[float, ...]:
    return tuple(float(segment.duration) for segment in m3u8.load(source_playlist).segments)


def _loop_age_s(source_playlist: str, now_ms: int) -> float:
    """A looped VOD made live by the gate: its newest segment is the last one completed
    by the clock (the same arithmetic as the gate's LiveLoopOrigin)."""
    durations = _loop_durations_s(source_playlist)
    into_cycle_s = (now_ms / 1000) % sum(durations)
    started_s = 0.0
    for duration_s in durations:
        if started_s + duration_s > into_cycle_s:
            break
        started_s += duration_s
    return into_cycle_s - started_s
