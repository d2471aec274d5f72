"""ffmpeg as the player: streams made by ffmpeg, rewritten and encrypted by the core,
served by a tiny stand-in for the service's keys delivery, decode to every frame with the
keys and to nothing without them (a key URI answering 403, or the wrong 16 bytes)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.delivery.crypto import encrypt_segment
from gateway.delivery.keys import StreamKeys, segment_iv
from gateway.delivery.playlists import rewrite_playlist
from gateway.delivery.urls import (
    ClearFile,
    EncryptedSegment,
    MediaUrls,
    PlaylistFile,
    key_target,
)
from tests.conftest import require_tool
from tests.delivery.conftest import STREAM_SECONDS, VIDEO_FPS, MemoryKeyStore

STREAM_ID = "show"
ROTATION_SECONDS = 4  # two 2 s segments per key: a key change inside every stream


class KeysDelivery:
    """The core behind two routes, as the service will use it: playlists rewritten and
    their keys made before they are served, segments encrypted on request, keys answered
    as `key_mode` says ("ok", "forbidden" or "wrong")."""

    def __init__(self, origin: Path) -> None:
        self.origin = origin
        self.urls = MediaUrls(secrets.token_bytes(32))
        self.keys = StreamKeys(MemoryKeyStore())
        self.key_mode = "ok"
        self.served: dict[str, bytes] = {}  # URL path -> body, media and keys
        self.hits: Counter[str] = Counter()
        app = web.Application()
        app.router.add_get("/media/{stream_id}/{rest:.+}", self._media)
        app.router.add_get("/keys/{stream_id}/{rest:.+}", self._key)
        self.server = TestServer(app)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def _media(self, request: web.Request) -> web.Response:
        stream_id, rest = request.match_info["stream_id"], request.match_info["rest"]
        target = self.urls.target(stream_id, rest) if stream_id == STREAM_ID else None
        if target is None:
            raise web.HTTPNotFound()
        self.hits[type(target).__name__] += 1
        data = (self.origin / target.media.path).read_bytes()
        if isinstance(target, PlaylistFile):
            playlist = rewrite_playlist(data.decode(), stream_id=stream_id,
                                        playlist_path=target.media.path, urls=self.urls,
                                        rotation_seconds=ROTATION_SECONDS, token=target.token)
            if playlist.window is not None:
                assert await self.keys.prepare(stream_id, playlist.key_ids,
                                               playlist.window) == []
            body = playlist.text.encode()
        elif isinstance(target, EncryptedSegment):
            key = await self.keys.get(stream_id, target.key_id)
            if key is None:
                raise web.HTTPNotFound()
            body = encrypt_segment(data, key, segment_iv(stream_id, target.key_id,
                                                         target.media.path))
        else:
            assert isinstance(target, ClearFile)
            body = data
        self.served[request.path] = body
        return web.Response(body=body, content_type=target.media.content_type)

    async def _key(self, request: web.Request) -> web.Response:
        target = key_target(request.match_info["rest"])
        if target is None or request.match_info["stream_id"] != STREAM_ID:
            raise web.HTTPNotFound()
        self.hits["key"] += 1
        if self.key_mode == "forbidden":
            raise web.HTTPForbidden()
        key = await self.keys.get(STREAM_ID, target.key_id)
        if key is None:
            raise web.HTTPNotFound()
        if self.key_mode == "wrong":
            key = bytes(byte ^ 0x5A for byte in key)
        self.served[request.path] = key
        return web.Response(body=key, content_type="application/octet-stream",
                            headers={"Cache-Control": "private, no-store"})


async def serve(origin: Path) -> AsyncIterator[KeysDelivery]:
    delivery = KeysDelivery(origin)
    await delivery.server.start_server()
    yield delivery
    await delivery.server.close()


@pytest.fixture
async def ts_delivery(ts_stream: Path) -> AsyncIterator[KeysDelivery]:
    async for delivery in serve(ts_stream):
        yield delivery


@pytest.fixture
async def fmp4_delivery(fmp4_stream: Path) -> AsyncIterator[KeysDelivery]:
    async for delivery in serve(fmp4_stream):
        yield delivery


@pytest.fixture
async def two_inits_delivery(fmp4_two_inits: Path) -> AsyncIterator[KeysDelivery]:
    async for delivery in serve(fmp4_two_inits):
        yield delivery


async def video_frames(url: str) -> int:
    """How many video frames ffprobe decodes from `url`; 0 when it cannot open it."""
    process = await asyncio.create_subprocess_exec(
        require_tool("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0",
        "-show_entries", "stream=nb_read_frames", "-of", "json", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    if process.returncode != 0:
        return 0
    streams = json.loads(stdout).get("streams", [])
    counted = streams[0].get("nb_read_frames") if streams else None
    return int(counted) if counted and counted.isdigit() else 0


async def test_the_mpegts_stream_plays_with_its_keys_and_not_without(
        ts_delivery: KeysDelivery) -> None:
    url = ts_delivery.url(f"/media/{STREAM_ID}/index.m3u8")
    assert await video_frames(url) == STREAM_SECONDS * VIDEO_FPS

    segments = {path: body for path, body in ts_delivery.served.items() if "/k/" in path}
    assert len(segments) == 3
    for body in segments.values():  # no MPEG-TS sync bytes: nothing readable in transit
        assert sum(body[i] == 0x47 for i in range(0, len(body), 188)) < len(body) // 188 // 4
    assert len({body for path, body in ts_delivery.served.items()
                if path.startswith("/keys/")}) == 2  # a key change at 4 s

    for mode in ("forbidden", "wrong"):
        ts_delivery.key_mode = mode
        keys_asked = ts_delivery.hits["key"]
        assert await video_frames(url) == 0, mode
        assert ts_delivery.hits["key"] > keys_asked  # the key, not something else, failed


async def test_an_fmp4_stream_behind_a_master_playlist_plays_with_a_path_token(
        fmp4_delivery: KeysDelivery) -> None:
    url = fmp4_delivery.url(f"/media/{STREAM_ID}/t/tok.en/master.m3u8")
    assert await video_frames(url) == STREAM_SECONDS * VIDEO_FPS
    keys = [path for path in fmp4_delivery.served if path.startswith("/keys/")]
    assert keys and all(path.startswith(f"/keys/{STREAM_ID}/t/tok.en/") for path in keys)
    assert fmp4_delivery.hits["ClearFile"] >= 1  # the init section, in the clear

    for mode in ("forbidden", "wrong"):
        fmp4_delivery.key_mode = mode
        assert await video_frames(url) == 0, mode


async def test_an_init_section_after_encrypted_segments_is_read_in_the_clear(
        two_inits_delivery: KeysDelivery, fmp4_two_inits: Path) -> None:
    """The second EXT-X-MAP follows encrypted segments: without METHOD=NONE before it,
    the player takes the init section as encrypted and loses the second half (ffmpeg
    then reads 100 frames here). ffmpeg 5.1 does not read all of a second half with a
    new resolution even from the clear origin: the encrypted stream must match that."""
    clear_frames = await video_frames(str(fmp4_two_inits / "index.m3u8"))
    assert clear_frames > 4 * VIDEO_FPS  # more than the first half
    url = two_inits_delivery.url(f"/media/{STREAM_ID}/index.m3u8")
    assert await video_frames(url) == clear_frames
    assert two_inits_delivery.hits["ClearFile"] == 2

    two_inits_delivery.key_mode = "wrong"
    assert await video_frames(url) == 0
