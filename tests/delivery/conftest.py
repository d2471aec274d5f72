"""Fixtures for keys delivery: an in-memory KeyStore that counts what it is asked, and
short HLS streams made by ffmpeg (MPEG-TS; fMP4 behind a master playlist; fMP4 across a
discontinuity with a second init section)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

# The gate's media on disk and its local HTTP origin, for keys delivery in the service.
from tests.gate.conftest import fmp4_dir, origin, ts_dir  # noqa: F401

VIDEO_FPS = 25
STREAM_SECONDS = 6  # three 2 s segments: enough for two keys at a 4 s rotation


class MemoryKeyStore:
    """A KeyStore in a dict, for tests only. `create` is first-writer-wins like the real
    stores must be; `calls` records every call; `gate`, when set, holds every call until
    the test opens it; `fail` makes calls raise."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], bytes] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def get(self, stream_id: str, key_id: str) -> bytes | None:
        await self._called("get", stream_id, key_id)
        return self.keys.get((stream_id, key_id))

    async def create(self, stream_id: str, key_id: str, key: bytes) -> bytes:
        await self._called("create", stream_id, key_id)
        return self.keys.setdefault((stream_id, key_id), key)

    async def _called(self, name: str, stream_id: str, key_id: str) -> None:
        self.calls.append((name, stream_id, key_id))
        await asyncio.sleep(0)  # a real store answers later, not in the same step
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail


@pytest.fixture
def key_store() -> MemoryKeyStore:
    return MemoryKeyStore()


def _ffmpeg_hls(directory: Path, *extra: str, seconds: int = STREAM_SECONDS,
                size: str = "160x90", playlist: str = "index.m3u8") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [require_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", f"testsrc2=size={size}:rate={VIDEO_FPS}", "-f", "lavfi",
         "-i", "sine=frequency=330", "-t", str(seconds), "-map", "0:v", "-map", "1:a",
         "-c:v", "libx264", "-g", str(2 * VIDEO_FPS), "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", *extra,
         str(directory / playlist)],
        check=True, timeout=60, cwd=directory,
    )


@pytest.fixture(scope="session")
def ts_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """index.m3u8 with seg0.ts .. seg2.ts."""
    directory = tmp_path_factory.mktemp("ts")
    _ffmpeg_hls(directory, "-hls_segment_filename", str(directory / "seg%d.ts"))
    return directory


@pytest.fixture(scope="session")
def fmp4_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """master.m3u8 naming v0/index.m3u8, with v0/init.mp4 and v0/part0.m4s ..."""
    directory = tmp_path_factory.mktemp("fmp4")
    _ffmpeg_hls(directory, "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0",
                "-hls_segment_filename", "v%v/part%d.m4s", playlist="v%v/index.m3u8")
    return directory


@pytest.fixture(scope="session")
def fmp4_two_inits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """index.m3u8: a/ (160x90), a discontinuity, b/ (192x108), each with its own
    EXT-X-MAP: an init section that follows encrypted segments."""
    directory = tmp_path_factory.mktemp("fmp4-two")
    for name, size in (("a", "160x90"), ("b", "192x108")):
        _ffmpeg_hls(directory / name, "-hls_segment_type", "fmp4",
                    "-hls_fmp4_init_filename", "init.mp4",
                    "-hls_segment_filename", str(directory / name / "part%d.m4s"),
                    seconds=4, size=size)
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for name in ("a", "b"):
        if name == "b":
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f'#EXT-X-MAP:URI="{name}/init.mp4"')
        for part in range(2):
            lines += ["#EXTINF:2.000000,", f"{name}/part{part}.m4s"]
    lines.append("#EXT-X-ENDLIST")
    (directory / "index.m3u8").write_text("\n".join(lines) + "\n")
    return directory
