"""ffmpeg as a real HLS client through the gate: it records a valid file while access
holds (cookie and path-token forms, HTTP and directory origins), and is refused before
payment and after expiry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import AppFactory, FakeClock, ViewerClient, make_settings, require_tool
from tests.gate.conftest import OriginServer, buy, write_catalog


@pytest.fixture
async def fmp4_origin(fmp4_dir: Path) -> AsyncIterator[OriginServer]:
    server = OriginServer(fmp4_dir)
    await server.server.start_server()
    yield server
    await server.server.close()


@pytest.fixture
async def viewer(make_viewer: AppFactory, tmp_path: Path, ts_dir: Path,
                 fmp4_origin: OriginServer) -> ViewerClient:
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "dir-ts", "title": "TS from a directory", "price": 1000,
         "origin": f"file://{ts_dir}/"},
        {"id": "http-fmp4", "title": "fMP4 from HTTP", "price": 1000,
         "origin": fmp4_origin.url()},
    ])
    return await make_viewer(make_settings(tmp_path, GATEWAY_STREAMS=str(catalog)))


async def run(*command: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, (stdout + stderr).decode(errors="replace")


async def record(viewer: ViewerClient, url_path: str, output: Path,
                 cookie: str | None = None) -> tuple[int, str]:
    ffmpeg = require_tool("ffmpeg")
    headers = ["-headers", f"Cookie: gate={cookie}\r\n"] if cookie else []
    return await run(ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *headers,
                     "-i", str(viewer.http.make_url(url_path)), "-c", "copy", str(output))


async def probe(path: Path) -> dict[str, object]:
    code, out = await run(require_tool("ffprobe"), "-v", "error", "-print_format", "json",
                          "-show_format", "-show_streams", str(path))
    assert code == 0, out
    return json.loads(out)


def gate_cookie(viewer: ViewerClient, stream_id: str) -> str:
    jar = viewer.http.session.cookie_jar
    return jar.filter_cookies(viewer.http.make_url(f"/hls/{stream_id}/x.ts"))["gate"].value


@pytest.mark.parametrize(("stream_id", "suffix"), [("dir-ts", ".ts"), ("http-fmp4", ".mp4")])
@pytest.mark.parametrize("form", ["cookie", "path-token"])
async def test_ffmpeg_records_the_stream_through_the_gate(
        viewer: ViewerClient, tmp_path: Path, clock: FakeClock,
        stream_id: str, suffix: str, form: str) -> None:
    before, out = await record(viewer, f"/hls/{stream_id}/index.m3u8", tmp_path / f"x{suffix}")
    assert before != 0 and "403" in out

    access = await buy(viewer, stream_id)
    output = tmp_path / f"recorded{suffix}"
    if form == "cookie":
        code, out = await record(viewer, access["playbackUrl"], output,
                                 cookie=gate_cookie(viewer, stream_id))
    else:
        code, out = await record(viewer, access["tokenPlaybackUrl"], output)
    assert code == 0, out
    info = await probe(output)
    kinds = {stream["codec_type"] for stream in info["streams"]}  # type: ignore[attr-defined]
    assert kinds == {"video", "audio"}
    assert float(info["format"]["duration"]) > 5.5  # type: ignore[index]

    clock.advance(7200)  # access over
    after, out = await record(viewer, access["tokenPlaybackUrl"], tmp_path / f"y{suffix}")
    assert after != 0 and "403" in out


async def test_the_bundled_demo_plays_out_of_the_box(make_viewer: AppFactory,
                                                     tmp_path: Path) -> None:
    """The default catalog, no origin server, no packager: ffmpeg records the live demo."""
    demo = await make_viewer()
    access = await buy(demo, "demo")
    output = tmp_path / "demo.ts"
    ffmpeg = require_tool("ffmpeg")
    # The window is 10 s and this clock stands still: take what the live edge offers.
    code, out = await run(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                          "-i", str(demo.http.make_url(access["tokenPlaybackUrl"])),
                          "-t", "4", "-c", "copy", str(output))
    assert code == 0, out
    info = await probe(output)
    assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}  # type: ignore[attr-defined]
    assert float(info["format"]["duration"]) >= 3.9  # type: ignore[index]
