"""Keys delivery in the service (`GATEWAY_DELIVERY=keys`): the core (keys.py, crypto.py,
urls.py, playlists.py) over the gate's origins and the store's keys.

- A playlist is read from the stream's origin (its caches: at most a second old), rewritten
  to name each segment's key, and answered once the keys it names exist in the store, so
  that any instance can answer the segments and keys it names. A live window that names
  keys this service can no longer make (older than the one before the newest, never made
  or expired) loses those segments instead.
- A segment is read from the origin once and encrypted once per instance, however many
  ask at the same moment (single flight), then kept in the gate's memory cache. Its key
  and IV follow from its URL, so every instance makes the same bytes and a CDN may
  keep any instance's copy.
- A key is answered from memory once this instance knows it; who may have it is the
  gate's decision (`HlsGate.admit`), taken by the handler like any media request.

No HTTP here: the handlers (handlers/media.py) read requests and write answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.delivery.crypto import encrypt_segment
from gateway.delivery.keys import KeyId, StreamKeys, segment_iv
from gateway.delivery.playlists import (
    RewrittenPlaylist,
    UnsupportedPlaylist,
    drop_segments_before,
    rewrite_playlist,
)
from gateway.delivery.urls import (
    ClearFile,
    EncryptedSegment,
    MediaUrls,
    PlaylistFile,
)
from gateway.device_model import PLAYING_WINDOW_MS
from gateway.errors import MediaNotFound, UnknownStream, UpstreamFailed
from gateway.gate.cache import ByteLru, CachedObject
from gateway.gate.origins import SEGMENT_CACHE_MS, SEGMENT_MAX_AGE_S, Origin
from gateway.logs import log_event

log = logging.getLogger("gateway.delivery")

# What a CDN (or nginx) may do with each answer. A playlist changes with every new
# segment: a second old at most, as the gate's own caches keep it. A segment's URL names
# its key and its bytes never change. A key is a viewer's alone.
PLAYLIST_CACHE_CONTROL = "public, max-age=1"
SEGMENT_CACHE_CONTROL = f"public, max-age={SEGMENT_MAX_AGE_S}, immutable"
KEY_CACHE_CONTROL = "private, no-store"
KEY_CONTENT_TYPE = "application/octet-stream"
# Encrypting takes ~1 ms a megabyte: bigger segments go to a thread, not the loop.
_ENCRYPT_ON_LOOP_BYTES = 256 * 1024
# Rewritten playlists remembered, per stream, path and token (the path-token form writes
# the token into its key URIs), with the origin's text they were made from.
_PLAYLISTS_REMEMBERED = 4096


def playing_window_ms(rotation_seconds: int) -> int:
    """How long a place plays after its last request, in keys delivery: a player asks
    the service only when the stream's key changes, about once a rotation, so a place
    is kept that long plus the gate's usual 30 s (SPEC, Devices)."""
    return rotation_seconds * 1000 + PLAYING_WINDOW_MS


def key_media_path(key_id: KeyId) -> str:
    """A key request as the gate's media path (an allow-listed `.key` file), so that the
    gate decides it with the rules of every playlist and segment."""
    return f"{key_id}.key"


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    body: bytes
    content_type: str
    cache_control: str


class KeysDelivery:
    def __init__(self, origin: Callable[[str], Origin | None], keys: StreamKeys,
                 urls: MediaUrls, *, rotation_seconds: int, cache: ByteLru,
                 clock: Clock) -> None:
        self._origin = origin  # a stream's origin (the gate's), None if no such stream
        self.keys = keys
        self._urls = urls
        self._rotation_seconds = rotation_seconds
        self._cache = cache
        self._clock = clock
        self._encrypting: dict[str, asyncio.Future[bytes]] = {}
        self._playlists: dict[tuple[str, str, str | None], tuple[bytes, bytes]] = {}
        # For the metrics and the tests: how often the real work was done.
        self.segments_encrypted = 0
        self.playlists_rewritten = 0

    async def media(self, stream_id: str, rest: str) -> MediaAnswer:
        """A `/media/{stream_id}/{rest}` answer, for anyone: a rewritten playlist, an
        encrypted segment, or a file served in the clear (init sections, subtitles)."""
        origin = self._origin(stream_id)
        if origin is None:
            raise UnknownStream()
        target = self._urls.target(stream_id, rest)
        if target is None:  # not a URL this service wrote
            raise MediaNotFound()
        if isinstance(target, PlaylistFile):
            return MediaAnswer(await self._playlist(origin, stream_id, target),
                               target.media.content_type, PLAYLIST_CACHE_CONTROL)
        if isinstance(target, EncryptedSegment):
            body = await self._encrypted(origin, stream_id, target)
        else:
            assert isinstance(target, ClearFile)
            body = await origin.read(target.media)
        return MediaAnswer(body, target.media.content_type, SEGMENT_CACHE_CONTROL)

    async def key(self, stream_id: str, key_id: KeyId) -> bytes:
        """A key of the stream that exists (made for a playlist, by any instance); the
        caller has decided that the viewer may have it. From memory once known here."""
        key = self.keys.known(stream_id, key_id) or await self.keys.get(stream_id, key_id)
        if key is None:
            raise MediaNotFound()
        return key

    # --- playlists ------------------------------------------------------------------

    async def _playlist(self, origin: Origin, stream_id: str, target: PlaylistFile) -> bytes:
        source = await origin.read(target.media)
        remembered_as = (stream_id, target.media.path, target.token)
        remembered = self._playlists.get(remembered_as)
        if remembered is not None and remembered[0] == source:
            return remembered[1]
        try:
            text = source.decode()
            playlist = self._rewrite(text, stream_id, target)
            if playlist.window is not None:
                missing = await self.keys.prepare(stream_id, playlist.key_ids, playlist.window)
                if missing:
                    # Old keys of a live window that cannot be made any more: the
                    # segments they cover go, the rest plays.
                    first_kept = max(key_id.first_sequence + key_id.segments
                                     for key_id in missing)
                    playlist = self._rewrite(drop_segments_before(text, first_kept),
                                             stream_id, target)
                    assert playlist.window is not None
                    if await self.keys.prepare(stream_id, playlist.key_ids, playlist.window):
                        raise UnsupportedPlaylist("its keys cannot be made")
        except (UnicodeDecodeError, UnsupportedPlaylist) as exc:
            log_event(log, "playlist_unsupported", level=logging.WARNING, streamId=stream_id,
                      path=target.media.path, reason=str(exc)[:200])
            raise UpstreamFailed() from None
        body = playlist.text.encode()
        if len(self._playlists) >= _PLAYLISTS_REMEMBERED:
            del self._playlists[next(iter(self._playlists))]  # the oldest
        self._playlists[remembered_as] = (source, body)
        return body

    def _rewrite(self, text: str, stream_id: str, target: PlaylistFile) -> RewrittenPlaylist:
        self.playlists_rewritten += 1
        return rewrite_playlist(text, stream_id=stream_id, playlist_path=target.media.path,
                                urls=self._urls, rotation_seconds=self._rotation_seconds,
                                token=target.token)

    # --- segments -------------------------------------------------------------------

    async def _encrypted(self, origin: Origin, stream_id: str,
                         target: EncryptedSegment) -> bytes:
        name = f"keys:{stream_id}/{target.key_id}/{target.media.path}"
        cached = self._cache.get(name, self._clock())
        if cached is not None:
            return cached.body
        encrypting = self._encrypting.get(name)
        if encrypting is None:
            encrypting = asyncio.ensure_future(self._encrypt(origin, stream_id, target, name))
            self._encrypting[name] = encrypting
            encrypting.add_done_callback(lambda done: self._encrypted_done(name, done))
        # One viewer hanging up must not cancel the work the others wait on.
        return await asyncio.shield(encrypting)

    def _encrypted_done(self, name: str, done: asyncio.Future[bytes]) -> None:
        self._encrypting.pop(name, None)
        if not done.cancelled():
            done.exception()  # retrieved here, raised to every waiter

    async def _encrypt(self, origin: Origin, stream_id: str, target: EncryptedSegment,
                       name: str) -> bytes:
        key = await self.key(stream_id, target.key_id)
        clear = await origin.read(target.media)
        iv = segment_iv(stream_id, target.key_id, target.media.path)
        if len(clear) <= _ENCRYPT_ON_LOOP_BYTES:
            body = encrypt_segment(clear, key, iv)
        else:
            body = await asyncio.to_thread(encrypt_segment, clear, key, iv)
        self.segments_encrypted += 1
        self._cache.put(name, CachedObject(body, None, self._clock() + SEGMENT_CACHE_MS))
        return body
