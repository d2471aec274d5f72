"""Fixtures for the gate: media on disk, a real local HTTP origin that counts what it is
asked for, and a catalog with one stream per kind of origin."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.settings import PACKAGE_DIR, Settings
from tests.conftest import AppFactory, ViewerClient, make_settings, require_tool

DEMO_SEGMENTS = PACKAGE_DIR / "demo" / "live"


@pytest.fixture
def ts_dir(tmp_path: Path) -> Path:
    """A VOD stream of MPEG-TS segments (the bundled ffmpeg-made ones) as an origin."""
    directory = tmp_path / "ts"
    shutil.copytree(DEMO_SEGMENTS, directory)
    (directory / "loop.m3u8").rename(directory / "index.m3u8")
    (directory / "secret.txt").write_text("not media")
    (tmp_path / "outside.ts").write_bytes(b"must never be served")
    return directory


@pytest.fixture(scope="session")
def fmp4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh fMP4 HLS stream made by ffmpeg: init segment, .m4s segments."""
    ffmpeg = require_tool("ffmpeg")
    directory = tmp_path_factory.mktemp("fmp4")
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc2=size=160x90:rate=25", "-f", "lavfi", "-i", "sine=frequency=330",
         "-t", "6", "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
         "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
         "-hls_segment_filename", str(directory / "part%d.m4s"), str(directory / "index.m3u8")],
        check=True, timeout=120,
    )
    return directory


class OriginServer:
    """A real HTTP origin on a local port. Tests steer it: hold responses until released,
    fail, hang, redirect; and read what it was asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: Counter[str] = Counter()
        self.queries: list[dict[str, str]] = []
        self.release: asyncio.Event | None = None
        self.behaviour: dict[str, str] = {}
        self.cache_control: str | None = None
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self.server = TestServer(app)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.hits[path] += 1
        self.queries.append(dict(request.query))
        if self.release is not None:
            await self.release.wait()
        behaviour = self.behaviour.get(path)
        if behaviour == "fail":
            return web.Response(status=503, text="origin down")
        if behaviour == "hang":
            await asyncio.sleep(3600)
        if behaviour == "redirect":
            raise web.HTTPFound("http://example.invalid/elsewhere.ts")
        if behaviour == "truncate":  # promise 1,000 bytes, send 100, hang up
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b"G" * 100)
            assert request.transport is not None
            request.transport.close()
            return response
        file = self.root / path
        if not file.is_file():
            return web.Response(status=404)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.FileResponse(file, headers=headers)

    def url(self, prefix: str = "") -> str:
        return str(self.server.make_url(f"/{prefix}"))


@pytest.fixture
async def origin(ts_dir: Path) -> AsyncIterator[OriginServer]:
    server = OriginServer(ts_dir)
    await server.server.start_server()
    yield server
    if server.release is not None:
        server.release.set()
    await server.server.close()


def write_catalog(path: Path, streams: list[dict[str, Any]]) -> Path:
    lines = []
    for stream in streams:
        lines.append("[[stream]]")
        for key, value in stream.items():
            rendered = str(value).lower() if isinstance(value, bool) else (
                str(value) if isinstance(value, int) else f'"{value}"')
            lines.append(f"{key} = {rendered}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def gate_settings(tmp_path: Path, ts_dir: Path, origin: OriginServer) -> Settings:
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "dir", "title": "Directory", "price": 1000, "origin": f"file://{ts_dir}/"},
        {"id": "http", "title": "HTTP", "price": 2000, "origin": origin.url()},
        {"id": "loop", "title": "Loop", "price": 3000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True},
    ])
    # The stream health poller stays out of the origin's hit counts.
    return make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                         GATEWAY_UPSTREAM_TIMEOUT_SECONDS="1",
                         GATEWAY_STREAM_CHECK_INTERVAL_SECONDS="300")


@pytest.fixture
async def gate_viewer(make_viewer: AppFactory, gate_settings: Settings) -> ViewerClient:
    return await make_viewer(gate_settings)


async def buy(viewer: ViewerClient, stream_id: str) -> dict[str, Any]:
    """Pay for a stream and ask check-access, which sets the gate cookie."""
    qr = await viewer.generate_qris(stream_id)
    await viewer.pay(qr["trxId"])
    access = await viewer.check_access(stream_id, qr["sessionId"])
    assert access["hasAccess"]
    return access


# A revoked ticket stops whatever its window (model.tokens_live_until_ms). Each case is a
# ticket whose tokens outlive what `paidAt` + the default window would say.
WINDOW_CASES = ("default", "own-window", "bought-ahead", "renewal")
DEFAULT_ACCESS_S = 5
OWN_ACCESS_S = 600
AHEAD_S = 12


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def windows_settings(tmp_path: Path, ts_dir: Path, now_ms: int, **overrides: str) -> Settings:
    """A default window of 5 s, a stream with its own of 600 s, and a show that starts
    12 s from `now_ms`, every one served from a directory."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    catalog = write_catalog(tmp_path / "windows.toml", [
        {"id": "short", "title": "Default window", "price": 1000, "origin": f"file://{ts_dir}/"},
        {"id": "own", "title": "Own window", "price": 1000, "origin": f"file://{ts_dir}/",
         "access_seconds": OWN_ACCESS_S},
        {"id": "ahead", "title": "Show", "price": 1000, "origin": f"file://{ts_dir}/",
         "starts_at": rfc3339(now_ms + AHEAD_S * 1000)},
    ])
    return make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                         GATEWAY_ACCESS_SECONDS=str(DEFAULT_ACCESS_S),
                         GATEWAY_STREAM_CHECK_INTERVAL_SECONDS="300", **overrides)


async def ticket_to_revoke(viewer: ViewerClient, clock: Any, case: str) -> dict[str, Any]:
    """Play a ticket of the given kind up to the moment it is revoked in the report
    that found the bug: check-access's answer for it (the gate cookie is set)."""
    if case == "default":
        access = await buy(viewer, "short")
        clock.advance(2)
    elif case == "own-window":
        access = await buy(viewer, "own")
        clock.advance(6)  # past paidAt + the default window
    elif case == "bought-ahead":
        qr = await viewer.generate_qris("ahead")
        await viewer.pay(qr["trxId"])
        assert not (await viewer.check_access("ahead", qr["sessionId"]))["hasAccess"]
        clock.advance(AHEAD_S + 1)  # the show has started
        access = await viewer.check_access("ahead", qr["sessionId"])
    else:  # a renewal, revoked in its last minutes
        await buy(viewer, "own")
        clock.advance(1)
        renewal = await viewer.generate_qris("own")
        await viewer.pay(renewal["trxId"])
        clock.advance(OWN_ACCESS_S)  # the first window is over, the renewal's is open
        access = await viewer.check_access("own")
        assert access["sessionId"] == renewal["sessionId"]
        clock.advance(OWN_ACCESS_S - 120)  # two minutes left of it
    assert access["hasAccess"], access
    return access
