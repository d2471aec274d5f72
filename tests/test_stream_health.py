"""Each stream's health as the console shows it: a real local HTTP origin (up, failing,
silent), a directory origin's newest file, the looped demo; looked at no more than every
few seconds per stream."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.catalog import Catalog, Stream
from gateway.settings import PACKAGE_DIR
from gateway.stream_health import RECHECK_AFTER_MS, StreamHealthMonitor
from tests.conftest import START_MS, FakeClock

LIVE = f"""#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-PROGRAM-DATE-TIME:{datetime.fromtimestamp(START_MS / 1000 - 20, UTC).isoformat()}
#EXTINF:4.0,
seg10.ts
#EXTINF:4.0,
seg11.ts
"""
NO_DATES = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg1.ts\n"
MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n"


class Origin:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.failing = False
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.serve)
        self.server = TestServer(app)

    async def serve(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.hits[path] += 1
        if self.failing:
            return web.Response(status=503)
        if path == "live/index.m3u8":
            return web.Response(text=LIVE)
        if path == "plain/index.m3u8":
            return web.Response(text=NO_DATES)
        if path == "master/index.m3u8":
            return web.Response(text=MASTER)
        if path == "master/low/index.m3u8":
            return web.Response(text=NO_DATES)
        if path.endswith("seg1.ts"):
            modified = datetime.fromtimestamp(START_MS / 1000 - 90, UTC)
            return web.Response(headers={"Last-Modified": modified.strftime(
                "%a, %d %b %Y %H:%M:%S GMT")})
        return web.Response(status=404)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    serving = Origin()
    await serving.server.start_server()
    yield serving
    await serving.server.close()


def http_stream(origin: Origin, folder: str) -> Stream:
    return Stream(folder, folder, 1000, str(origin.server.make_url(f"/{folder}/")), None)


async def health_of(streams: list[Stream], clock: FakeClock
                    ) -> tuple[StreamHealthMonitor, aiohttp.ClientSession]:
    client = aiohttp.ClientSession()
    return StreamHealthMonitor(Catalog(streams), client, clock), client


async def test_an_http_origin_is_up_and_its_newest_segment_aged(origin: Origin,
                                                                clock: FakeClock) -> None:
    streams = [http_stream(origin, "live"), http_stream(origin, "plain"),
               http_stream(origin, "master")]
    monitor, client = await health_of(streams, clock)
    try:
        live, plain, master = await monitor.all()
    finally:
        await client.close()
    # Program date time 20 s ago, plus two 4 s segments: the newest ended 12 s ago.
    assert live.up and live.newest_segment_age_s == pytest.approx(12.0)
    # No dates in the playlist: the newest segment's Last-Modified, 90 s ago.
    assert plain.up and plain.newest_segment_age_s == pytest.approx(90.0)
    assert master.up and master.newest_segment_age_s == pytest.approx(90.0)


async def test_a_failing_or_absent_origin_is_down(origin: Origin, clock: FakeClock) -> None:
    origin.failing = True
    gone = Stream("gone", "gone", 1000, "http://127.0.0.1:9/", None)  # discard port
    monitor, client = await health_of([http_stream(origin, "live"), gone], clock)
    try:
        failing, absent = await monitor.all()
    finally:
        await client.close()
    assert not failing.up and "503" in failing.problem
    assert not absent.up and absent.problem


async def test_an_origin_is_looked_at_no_more_than_every_few_seconds(
        origin: Origin, clock: FakeClock) -> None:
    monitor, client = await health_of([http_stream(origin, "live")], clock)
    try:
        await monitor.all()
        await monitor.all()
        assert origin.hits["live/index.m3u8"] == 1
        origin.failing = True
        clock.advance(RECHECK_AFTER_MS / 1000)
        (health,) = await monitor.all()
        assert origin.hits["live/index.m3u8"] == 2 and not health.up
    finally:
        await client.close()


async def test_a_directory_origin_ages_by_its_newest_file(tmp_path: Path,
                                                         clock: FakeClock) -> None:
    (tmp_path / "index.m3u8").write_text(NO_DATES)
    segment = tmp_path / "seg1.ts"
    segment.write_bytes(b"x")
    a_minute_ago = time.time() - 60
    os.utime(segment, (a_minute_ago, a_minute_ago))
    missing = tmp_path / "missing"
    missing.mkdir()
    streams = [Stream("dir", "dir", 1000, None, tmp_path),
               Stream("missing", "missing", 1000, None, missing)]
    monitor, client = await health_of(streams, clock)
    try:
        here, absent = await monitor.all()
    finally:
        await client.close()
    assert here.up and 59 < (here.newest_segment_age_s or 0) < 120
    assert not absent.up


async def test_the_looped_demo_is_always_fresh(clock: FakeClock) -> None:
    demo = Stream("demo", "demo", 1000, None, PACKAGE_DIR / "demo" / "live",
                  playlist="live.m3u8", loop_source="loop.m3u8")
    monitor, client = await health_of([demo], clock)
    ages = []
    try:
        for _ in range(8):
            clock.advance(RECHECK_AFTER_MS / 1000 + 0.7)
            (health,) = await monitor.all()
            assert health.up
            ages.append(health.newest_segment_age_s)
    finally:
        await client.close()
    longest = max(float(line.split(":")[1].rstrip(","))
                  for line in (PACKAGE_DIR / "demo" / "live" / "loop.m3u8").read_text().split()
                  if line.startswith("#EXTINF"))
    assert all(age is not None and 0 <= age < longest for age in ages)
    assert len(set(ages)) > 1  # it moves with the clock
