"""Whether each stream is live: the service watches every origin itself.

The gate cannot learn it from viewers' requests: behind nginx the gate never sees the
bytes, and a stream nobody watches would never be asked. So one background task polls
each origin's playlist (following a master playlist to its first variant) and keeps, per
stream, when the last good playlist came and how old its newest segment is.

A check is good when the playlist parses, lists segments, and its newest segment is
fresh (it changed within three target durations; a playlist with `#EXT-X-ENDLIST` is
finished media and always fresh). A stream is offline only once no check has been good
for `offline_after_ms` (60 s by default): a restart of the packager, a dropped
connection or one slow answer is a blip, not an outage.

`stream_status` is the pure decision the API, the pages and the purchase rule share.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import aiohttp
import m3u8
from yarl import URL

from gateway.catalog import Catalog, Stream
from gateway.clock import Clock
from gateway.errors import StreamCancelled, StreamOffline
from gateway.logs import log_event

log = logging.getLogger("gateway.stream_health")

MAX_PLAYLIST_BYTES = 1024 * 1024
_FRESH_TARGET_DURATIONS = 3


class StreamStatus(StrEnum):
    LIVE = "live"
    OFFLINE = "offline"
    SCHEDULED = "scheduled"  # starts_at is still ahead
    ENDED = "ended"  # ends_at has passed
    CANCELLED = "cancelled"  # called off by the operator: never sold again


@dataclass(frozen=True, slots=True)
class OriginHealth:
    """What the last checks of one origin found. Times are ms since the epoch."""

    up: bool  # whether the stream counts as up now (blips under the limit included)
    last_check_ok: bool
    checked_at_ms: int | None  # None until the first check has finished
    last_good_at_ms: int | None
    newest_segment_age_ms: int | None  # now; None until a playlist listed segments
    problem: str | None  # why the last check failed, for the log (never for viewers)
    # The same as a stable code the console words in its own language: unreachable,
    # timeout, http_<status>, bad_playlist, stalled, or not_checked (never yet).
    reason: str | None = None


def stream_status(stream: Stream, health: OriginHealth, now_ms: int) -> StreamStatus:
    """What a viewer is told about a stream. The catalog's times come first: an event
    that has ended is over even if its origin still plays, and one that has not started
    yet can be bought (a ticket ahead) whatever its origin does."""
    if stream.ends_at_ms is not None and now_ms >= stream.ends_at_ms:
        return StreamStatus.ENDED
    if stream.starts_at_ms is not None and now_ms < stream.starts_at_ms:
        return StreamStatus.SCHEDULED
    return StreamStatus.LIVE if health.up else StreamStatus.OFFLINE


def can_buy(status: StreamStatus) -> bool:
    return status in (StreamStatus.LIVE, StreamStatus.SCHEDULED)


class PlaylistSource(abc.ABC):
    """How to read one stream's playlist for a check."""

    @abc.abstractmethod
    async def read(self, name: str) -> str:
        """The playlist's text; raises OSError, aiohttp.ClientError, TimeoutError or
        ValueError when it cannot be had."""


class HttpPlaylists(PlaylistSource):
    def __init__(self, base_url: str, client: aiohttp.ClientSession,
                 timeout_seconds: float) -> None:
        self._base = URL(base_url)
        self._client = client
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def read(self, name: str) -> str:
        url = self._base.join(URL(name))
        if url.origin() != self._base.origin():
            raise ValueError("a variant on another host")
        async with self._client.get(url, timeout=self._timeout, allow_redirects=False) as got:
            if got.status != 200:
                raise ValueError(f"HTTP {got.status}")
            body = await got.content.read(MAX_PLAYLIST_BYTES + 1)
        if len(body) > MAX_PLAYLIST_BYTES:
            raise ValueError("playlist too large")
        return body.decode("utf-8", errors="replace")


class DirectoryPlaylists(PlaylistSource):
    def __init__(self, directory: Path) -> None:
        self._directory = directory.resolve()

    async def read(self, name: str) -> str:
        path = (self._directory / name).resolve()
        if not path.is_relative_to(self._directory):
            raise ValueError("a variant outside the origin")
        return await asyncio.to_thread(path.read_text, "utf-8", "replace")


class _Tracker:
    """Per stream: the newest segment seen and since when, and the last good check."""

    def __init__(self, started_at_ms: int) -> None:
        self.started_at_ms = started_at_ms
        self.newest_segment: str | None = None
        self.newest_seen_at_ms = 0
        self.checked_at_ms: int | None = None
        self.last_check_ok = False
        self.last_good_at_ms: int | None = None
        self.problem: str | None = None
        self.reason: str | None = None


class StreamHealth:
    """Watches every origin in the catalog. One object behind one app key
    (`STREAM_HEALTH`): the API, the pages and the operator's console read it."""

    def __init__(self, catalog: Catalog, sources: dict[str, PlaylistSource | None],
                 clock: Clock, *, offline_after_seconds: int) -> None:
        """`sources[stream_id]` is None for a stream the gate makes from the clock (a
        looped VOD): it is live whenever the service is."""
        self.catalog = catalog
        self._sources = sources
        self._clock = clock
        self.offline_after_ms = offline_after_seconds * 1000
        now_ms = clock()
        self._trackers = {stream.stream_id: _Tracker(now_ms) for stream in catalog}
        # Whether the operator called the show off (refunds.py keeps that): whatever its
        # origin does, a cancelled show is never sold again.
        self.is_cancelled: Callable[[str], bool] = lambda stream_id: False

    def health(self, stream_id: str) -> OriginHealth:
        tracker = self._trackers[stream_id]
        now_ms = self._clock()
        if self._sources.get(stream_id) is None:
            return OriginHealth(True, True, now_ms, now_ms, 0, None)
        # Never seen good is not up: a stream whose origin nobody has checked is not
        # sold (the first check runs before the service takes requests). Once seen
        # good, a blip shorter than `offline_after` does not take it off sale.
        good_at_ms = tracker.last_good_at_ms
        up = good_at_ms is not None and now_ms - good_at_ms < self.offline_after_ms
        age_ms = (now_ms - tracker.newest_seen_at_ms
                  if tracker.newest_segment is not None else None)
        return OriginHealth(up, tracker.last_check_ok, tracker.checked_at_ms,
                            tracker.last_good_at_ms, age_ms, tracker.problem,
                            tracker.reason if tracker.checked_at_ms is not None
                            else "not_checked")

    def status(self, stream: Stream) -> StreamStatus:
        if self.is_cancelled(stream.stream_id):
            return StreamStatus.CANCELLED
        return stream_status(stream, self.health(stream.stream_id), self._clock())

    def ensure_stream_buyable(self, stream_id: str) -> None:
        """`ensure_buyable` by id; a stream not in the catalog is the caller's to refuse
        (unknown_stream)."""
        stream = self.catalog.get(stream_id)
        if stream is not None:
            self.ensure_buyable(stream)

    def ensure_buyable(self, stream: Stream) -> None:
        """Refuse to sell a stream that is cancelled, offline and not scheduled, or has
        ended."""
        status = self.status(stream)
        if status == StreamStatus.CANCELLED:
            raise StreamCancelled()
        if not can_buy(status):
            raise StreamOffline()

    def snapshot(self) -> dict[str, OriginHealth]:
        """Every stream's health, for the operator's console."""
        return {stream_id: self.health(stream_id) for stream_id in self._trackers}

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(stream.stream_id) for stream in self.catalog
                               if self._sources.get(stream.stream_id) is not None))

    async def check(self, stream_id: str) -> None:
        stream = self.catalog.get(stream_id)
        source = self._sources.get(stream_id)
        if stream is None or source is None:
            return
        tracker = self._trackers[stream_id]
        was_up = self.health(stream_id).up
        try:
            newest, fresh_for_ms, finished = await _newest_segment(source, stream.playlist)
            problem = reason = None
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            newest, fresh_for_ms, finished = None, 0, False
            problem, reason = f"{type(exc).__name__}: {exc}"[:200], _reason(exc)
        now_ms = self._clock()
        tracker.checked_at_ms = now_ms
        if newest is not None and newest != tracker.newest_segment:
            tracker.newest_segment, tracker.newest_seen_at_ms = newest, now_ms
        age_ms = now_ms - tracker.newest_seen_at_ms if newest is not None else None
        if newest is not None and not finished and age_ms is not None \
                and age_ms > fresh_for_ms:
            problem = f"newest segment unchanged for {age_ms // 1000} s"
            reason = "stalled"
        tracker.last_check_ok = problem is None
        tracker.problem, tracker.reason = problem, reason
        if problem is None:
            tracker.last_good_at_ms = now_ms
        is_up = self.health(stream_id).up
        if is_up != was_up:
            log_event(log, "stream_up" if is_up else "stream_down", streamId=stream_id,
                      level=logging.INFO if is_up else logging.WARNING, problem=problem)

    async def run(self, interval_seconds: float) -> None:
        # The first round after one interval: resources.stream_health_ctx ran one
        # before the service took its first request.
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.check_all()
            except Exception:  # one odd origin must not end the watching of all
                log.exception("stream health check failed")


def _reason(exc: BaseException) -> str:
    """Why a check failed, as a stable code (the log keeps the exception's words)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ValueError) and str(exc).startswith("HTTP "):
        return "http_" + str(exc).removeprefix("HTTP ")[:3]
    if isinstance(exc, OSError | aiohttp.ClientError):
        return "unreachable"
    return "bad_playlist"


async def _newest_segment(source: PlaylistSource, playlist: str
                          ) -> tuple[str | None, int, bool]:
    """The newest segment's URI, how long it may stay newest before the stream counts
    as stalled, and whether the playlist is finished (#EXT-X-ENDLIST)."""
    text = await source.read(playlist)
    parsed = m3u8.loads(text)
    if parsed.is_variant:
        if not parsed.playlists:
            raise ValueError("a master playlist without variants")
        parsed = m3u8.loads(await source.read(str(parsed.playlists[0].uri)))
    if not parsed.segments:
        raise ValueError("a playlist without segments")
    newest = parsed.segments[-1]
    # The sequence number makes a live window's newest entry unique even when a
    # packager reuses file names.
    sequence = (parsed.media_sequence or 0) + len(parsed.segments) - 1
    target_s = parsed.target_duration or max(float(s.duration or 0) for s in parsed.segments)
    fresh_for_ms = int(_FRESH_TARGET_DURATIONS * max(float(target_s), 1.0) * 1000)
    return f"{sequence}:{newest.uri}", fresh_for_ms, bool(parsed.is_endlist)
