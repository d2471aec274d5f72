"""What the gate serves from each kind of origin: bytes, headers, ranges, the demo's live
window, and how it treats an HTTP upstream (one fetch for many viewers, bounded waits)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import m3u8
import pytest

from gateway.gate.cache import ByteLru, CachedObject
from gateway.gate.origins import LOOP_EPOCH_MS
from gateway.keys import GATE
from gateway.settings import SERVER_NAME
from tests.conftest import AppFactory, FakeClock, ViewerClient, make_settings, wait_until
from tests.gate.conftest import OriginServer, buy, write_catalog


async def get(viewer: ViewerClient, path: str, **headers: str) -> tuple[int, dict[str, str],
                                                                         bytes]:
    async with viewer.http.get(path, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.parametrize("stream_id", ["dir", "http"])
async def test_playlists_and_segments_come_through_unchanged(
        gate_viewer: ViewerClient, ts_dir: Path, stream_id: str, clock: FakeClock) -> None:
    await buy(gate_viewer, stream_id)
    clock.advance(7200 - 30)  # 30 s of access left
    status, headers, body = await get(gate_viewer, f"/hls/{stream_id}/index.m3u8")
    assert status == 200 and body == (ts_dir / "index.m3u8").read_bytes()  # not rewritten
    assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert headers["Cache-Control"] == "private, no-cache"
    status, headers, body = await get(gate_viewer, f"/hls/{stream_id}/seg1.ts")
    assert status == 200 and body == (ts_dir / "seg1.ts").read_bytes()
    assert headers["Content-Type"] == "video/mp2t"
    assert not re.search(r"[0-9]", headers["Server"])  # no versions for an attacker
    # A segment is never cached longer than the viewer's access lasts.
    assert headers["Cache-Control"] == "private, max-age=30"


@pytest.mark.parametrize("stream_id", ["dir", "http", "loop"])
async def test_every_media_answer_carries_the_security_headers(
        gate_viewer: ViewerClient, stream_id: str) -> None:
    """Streamed from the origin (first request), from memory, as a byte range, and the
    demo loop's playlist, which is written here."""
    await buy(gate_viewer, stream_id)
    _, _, playlist = await get(gate_viewer, f"/hls/{stream_id}/index.m3u8")
    segment = next(line for line in playlist.decode().splitlines()
                   if line and not line.startswith("#"))
    for path, headers in ((segment, {}), (segment, {}), (segment, {"Range": "bytes=0-9"}),
                          ("index.m3u8", {}), ("index.m3u8", {})):
        status, answer, _ = await get(gate_viewer, f"/hls/{stream_id}/{path}", **headers)
        assert status in (200, 206), path
        assert answer["Referrer-Policy"] == "same-origin", (path, headers)
        assert answer["X-Content-Type-Options"] == "nosniff", (path, headers)
        assert answer["Server"] == SERVER_NAME, (path, headers)
        assert "Set-Cookie" not in answer


@pytest.mark.parametrize("stream_id", ["dir", "http"])
async def test_range_requests_get_206(gate_viewer: ViewerClient, ts_dir: Path,
                                      stream_id: str) -> None:
    await buy(gate_viewer, stream_id)
    whole = (ts_dir / "seg2.ts").read_bytes()
    for attempt in range(2):  # for HTTP: first passed upstream, then from the cache
        status, headers, body = await get(gate_viewer, f"/hls/{stream_id}/seg2.ts",
                                          Range="bytes=188-375")
        assert status == 206, attempt
        assert body == whole[188:376]
        assert headers["Content-Range"] == f"bytes 188-375/{len(whole)}"
        if attempt == 0:
            await get(gate_viewer, f"/hls/{stream_id}/seg2.ts")  # now cached (HTTP)
    status, _, _ = await get(gate_viewer, f"/hls/{stream_id}/seg2.ts",
                             Range=f"bytes={len(whole) + 10}-")
    assert status == 416


async def test_content_types_of_every_media_kind(make_viewer: AppFactory, tmp_path: Path,
                                                 fmp4_dir: Path) -> None:
    for name, body in (("sub.vtt", b"WEBVTT\n"), ("audio.aac", b"\xff\xf1"),
                       ("key.key", b"k" * 16), ("clip.mp4", b"\0\0\0\x18ftyp")):
        (fmp4_dir / name).write_bytes(body)
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "fmp4", "title": "fMP4", "price": 1000, "origin": f"file://{fmp4_dir}/"}])
    viewer = await make_viewer(make_settings(tmp_path, GATEWAY_STREAMS=str(catalog)))
    await buy(viewer, "fmp4")
    expected = {"index.m3u8": "application/vnd.apple.mpegurl", "init.mp4": "video/mp4",
                "part0.m4s": "video/iso.segment", "sub.vtt": "text/vtt",
                "audio.aac": "audio/aac", "key.key": "application/octet-stream",
                "clip.mp4": "video/mp4"}
    for name, content_type in expected.items():
        status, headers, _ = await get(viewer, f"/hls/fmp4/{name}")
        assert status == 200, name
        assert headers["Content-Type"].split(";")[0] == content_type, name
    status, _, _ = await get(viewer, "/hls/fmp4/missing.m4s")
    assert status == 404


async def test_the_demo_loop_is_live_and_its_window_moves_with_the_clock(
        gate_viewer: ViewerClient, clock: FakeClock) -> None:
    await buy(gate_viewer, "loop")

    async def playlist() -> m3u8.M3U8:
        status, _, body = await get(gate_viewer, "/hls/loop/index.m3u8")
        assert status == 200
        return m3u8.loads(body.decode())

    first = await playlist()
    assert not first.is_endlist and first.playlist_type is None  # live, not VOD
    assert len(first.segments) == 5 and first.target_duration == 2
    clock.advance(2)
    second = await playlist()
    assert second.media_sequence == first.media_sequence + 1
    assert [s.uri for s in second.segments][:-1] == [s.uri for s in first.segments][1:]
    # Every wrap of the 4-segment loop is a discontinuity, counted once it scrolls out.
    for listing in (first, second):
        for segment in listing.segments:
            number = int(segment.uri.split(".")[0])
            assert segment.discontinuity == (number % 4 == 0)
        assert listing.discontinuity_sequence == (listing.media_sequence - 1) // 4
    # Counted from November 2026, not 1970: players keep per-discontinuity state in
    # arrays indexed by this number (hls.js walks one on every playlist it loads).
    days_since_epoch = (clock() - LOOP_EPOCH_MS) / 86_400_000
    assert first.discontinuity_sequence <= 86_400 / 8 * days_since_epoch + 1
    for segment in second.segments:
        status, headers, body = await get(gate_viewer, f"/hls/loop/{segment.uri}")
        assert status == 200 and body[:1] == b"G"  # MPEG-TS sync byte
        assert headers["Content-Type"] == "video/mp2t"


async def test_concurrent_viewers_cause_one_upstream_fetch(
        make_viewer: AppFactory, tmp_path: Path, origin: OriginServer, ts_dir: Path) -> None:
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "http", "title": "HTTP", "price": 2000, "origin": origin.url()}])
    # No cache: only coalescing can keep the origin at one request.
    viewer = await make_viewer(make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                                             GATEWAY_SEGMENT_CACHE_BYTES="0"))
    await buy(viewer, "http")
    app = viewer.http.app
    assert app is not None
    fetcher = app[GATE].fetcher
    origin.release = asyncio.Event()
    viewers = 25
    requests = [asyncio.create_task(get(viewer, "/hls/http/seg3.ts")) for _ in range(viewers)]
    await wait_until(lambda: fetcher.coalesced_requests == viewers - 1)
    origin.release.set()
    results = await asyncio.gather(*requests)
    assert origin.hits["seg3.ts"] == 1
    whole = (ts_dir / "seg3.ts").read_bytes()
    assert all(status == 200 and body == whole for status, _, body in results)


async def test_hot_segments_are_served_from_the_cache(gate_viewer: ViewerClient,
                                                      origin: OriginServer,
                                                      clock: FakeClock) -> None:
    await buy(gate_viewer, "http")
    origin.hits.clear()  # forget the start-up check of the origin
    for _ in range(5):
        await get(gate_viewer, "/hls/http/seg0.ts")
        await get(gate_viewer, "/hls/http/index.m3u8")
    assert origin.hits["seg0.ts"] == 1
    assert origin.hits["index.m3u8"] == 1
    clock.advance(1)  # a live playlist is cached for a second only
    await get(gate_viewer, "/hls/http/index.m3u8")
    assert origin.hits["index.m3u8"] == 2


async def test_while_a_live_playlist_is_fetched_again_other_viewers_get_the_last_copy(
        gate_viewer: ViewerClient, origin: OriginServer, ts_dir: Path, clock: FakeClock
) -> None:
    """Once a second the playlist is fetched again: the viewer who found it expired waits
    for the new one, everyone asking meanwhile is answered at once from the last copy."""
    await buy(gate_viewer, "http")
    origin.hits.clear()  # forget the start-up check of the origin
    _, _, last = await get(gate_viewer, "/hls/http/index.m3u8")
    newer = last + b"#EXT-X-ENDLIST\n"
    (ts_dir / "index.m3u8").write_bytes(newer)
    clock.advance(1)
    origin.release = asyncio.Event()
    waiting = asyncio.create_task(get(gate_viewer, "/hls/http/index.m3u8"))
    await wait_until(lambda: origin.hits["index.m3u8"] == 2)  # held at the origin
    for _ in range(3):
        status, _, body = await asyncio.wait_for(get(gate_viewer, "/hls/http/index.m3u8"), 5)
        assert status == 200 and body == last
    origin.release.set()
    assert (await waiting)[2] == newer
    assert (await get(gate_viewer, "/hls/http/index.m3u8"))[2] == newer
    assert origin.hits["index.m3u8"] == 2


async def test_while_a_playlist_file_is_read_again_other_viewers_get_the_last_copy(
        gate_viewer: ViewerClient, ts_dir: Path, clock: FakeClock) -> None:
    await buy(gate_viewer, "dir")
    _, _, last = await get(gate_viewer, "/hls/dir/index.m3u8")
    newer = last + b"#EXT-X-ENDLIST\n"
    # The file becomes a pipe: reading it again waits until the test writes the new one.
    playlist = ts_dir / "index.m3u8"
    playlist.unlink()
    os.mkfifo(playlist)
    clock.advance(1)
    waiting = asyncio.create_task(get(gate_viewer, "/hls/dir/index.m3u8"))
    writer: int | None = None

    def reader_waits() -> bool:
        nonlocal writer
        try:  # succeeds only once the gate's read has the pipe open
            writer = os.open(playlist, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    try:
        await wait_until(reader_waits)
        for _ in range(3):
            status, _, body = await asyncio.wait_for(get(gate_viewer, "/hls/dir/index.m3u8"), 5)
            assert status == 200 and body == last
        assert writer is not None
        os.write(writer, newer)
    finally:
        if writer is not None:
            os.close(writer)  # the read ends, whatever happened
    assert (await waiting)[2] == newer
    assert (await get(gate_viewer, "/hls/dir/index.m3u8"))[2] == newer


async def test_the_origin_can_forbid_caching(gate_viewer: ViewerClient,
                                             origin: OriginServer) -> None:
    origin.cache_control = "no-cache"
    await buy(gate_viewer, "http")
    origin.hits.clear()  # forget the start-up check of the origin
    for _ in range(3):
        await get(gate_viewer, "/hls/http/index.m3u8")
    assert origin.hits["index.m3u8"] == 3


def test_the_cache_is_bounded_in_bytes(clock: FakeClock) -> None:
    cache = ByteLru(max_bytes=800)
    for index in range(10):
        cache.put(f"k{index}", CachedObject(b"x" * 100, None, clock() + 10_000))
        cache.get("k0", clock())  # k0 stays hot
    assert cache.size_bytes <= 800 and len(cache) == 8
    assert cache.get("k0", clock()) is not None and cache.get("k1", clock()) is None
    cache.put("huge", CachedObject(b"x" * 101, None, clock() + 10_000))
    assert cache.get("huge", clock()) is None  # over an eighth of the cache: never kept
    clock.advance(10)
    assert cache.get("k0", clock()) is None  # expired


def test_an_expired_copy_answers_only_while_it_is_fetched_again(clock: FakeClock) -> None:
    cache = ByteLru(max_bytes=800)
    cache.put("k", CachedObject(b"old", None, clock() + 1000))
    clock.advance(1)
    assert cache.get("k", clock()) is None  # expired, and nobody fetching it yet
    cache.refresh_started("k")
    stale = cache.get("k", clock())
    assert stale is not None and stale.body == b"old"  # the last copy, meanwhile
    cache.refresh_ended("k", CachedObject(b"newer", None, clock() + 1000))
    fresh = cache.get("k", clock())
    assert fresh is not None and fresh.body == b"newer" and cache.size_bytes == 5
    clock.advance(1)
    cache.refresh_started("k")
    cache.refresh_ended("k", None)  # the fetch failed, or may not be cached
    cache.refresh_started("k")
    assert cache.get("k", clock()) is None and cache.size_bytes == 0  # the old copy went
    cache.put("k", CachedObject(b"x", None, clock() + 1000))
    cache.put("k", CachedObject(b"x" * 101, None, clock() + 1000))  # too big to keep
    assert cache.get("k", clock()) is None and cache.size_bytes == 0  # nor the old one


async def test_ll_hls_directives_reach_the_upstream_and_nothing_else_does(
        gate_viewer: ViewerClient, origin: OriginServer) -> None:
    await buy(gate_viewer, "http")
    await get(gate_viewer, "/hls/http/index.m3u8?_HLS_msn=12&_HLS_part=2&debug=1")
    assert origin.queries[-1] == {"_HLS_msn": "12", "_HLS_part": "2"}


@pytest.mark.parametrize(("behaviour", "status"), [("fail", 502), ("redirect", 502),
                                                   ("hang", 504)])
async def test_upstream_trouble_is_a_quick_5xx(gate_viewer: ViewerClient, origin: OriginServer,
                                               behaviour: str, status: int) -> None:
    await buy(gate_viewer, "http")
    origin.behaviour["seg1.ts"] = behaviour
    started = time.monotonic()
    code, headers, body = await get(gate_viewer, "/hls/http/seg1.ts")
    assert code == status
    assert time.monotonic() - started < 3  # GATEWAY_UPSTREAM_TIMEOUT_SECONDS=1 here
    assert headers["Cache-Control"] == "private, no-store"
    assert re.search(rb'"code": ?"upstream_(failed|timeout)"', body)


async def test_an_unreachable_upstream_is_502(make_viewer: AppFactory, tmp_path: Path,
                                              ts_dir: Path) -> None:
    # The origin answers while the ticket is sold, then goes away: nothing listens any more.
    leaving = OriginServer(ts_dir)
    await leaving.server.start_server()
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "gone", "title": "Gone", "price": 1000,
         "origin": f"http://127.0.0.1:{leaving.server.port}/"}])
    try:
        viewer = await make_viewer(make_settings(tmp_path, GATEWAY_STREAMS=str(catalog)))
        await buy(viewer, "gone")
    finally:
        await leaving.server.close()
    status, _, body = await get(viewer, "/hls/gone/index.m3u8")
    assert status == 502 and b"upstream_failed" in body


async def test_a_missing_upstream_object_is_404(gate_viewer: ViewerClient) -> None:
    await buy(gate_viewer, "http")
    status, _, _ = await get(gate_viewer, "/hls/http/nope.ts")
    assert status == 404



async def test_an_upstream_dying_mid_body_breaks_the_response(gate_viewer: ViewerClient,
                                                              origin: OriginServer) -> None:
    import aiohttp

    await buy(gate_viewer, "http")
    origin.behaviour["seg1.ts"] = "truncate"
    with pytest.raises(aiohttp.ClientPayloadError):
        async with gate_viewer.http.get("/hls/http/seg1.ts") as response:
            assert response.status == 200
            await response.read()
    origin.behaviour.clear()  # and nothing broken was cached
    status, _, body = await get(gate_viewer, "/hls/http/seg1.ts")
    assert status == 200 and len(body) > 1000


async def test_head_requests_are_answered(gate_viewer: ViewerClient) -> None:
    await buy(gate_viewer, "dir")
    async with gate_viewer.http.head("/hls/dir/seg0.ts") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/mp2t"


async def test_range_requests_for_an_uncached_segment_share_one_upstream_fetch(
        gate_viewer: ViewerClient, origin: OriginServer, ts_dir: Path) -> None:
    """A paid viewer asking for 50 ranges of a segment must not make the gate ask the
    origin 50 times (it did: each range went straight through)."""
    await buy(gate_viewer, "http")
    whole = (ts_dir / "seg3.ts").read_bytes()
    origin.release = asyncio.Event()
    ranges = [(start, start + 187) for start in range(0, 50 * 188, 188)]
    asks = [asyncio.create_task(get(gate_viewer, "/hls/http/seg3.ts",
                                    Range=f"bytes={start}-{end}")) for start, end in ranges]
    await wait_until(lambda: origin.hits["seg3.ts"] >= 1)
    origin.release.set()
    answers = await asyncio.gather(*asks)
    assert origin.hits["seg3.ts"] == 1
    for (start, end), (status, headers, body) in zip(ranges, answers, strict=True):
        assert status == 206 and body == whole[start:end + 1]
        assert headers["Content-Range"] == f"bytes {start}-{end}/{len(whole)}"


async def test_names_the_origin_lacks_are_remembered_briefly(
        gate_viewer: ViewerClient, origin: OriginServer, clock: FakeClock) -> None:
    await buy(gate_viewer, "http")
    for _ in range(20):
        assert (await get(gate_viewer, "/hls/http/nope.ts"))[0] == 404
    assert origin.hits["nope.ts"] == 1
    clock.advance(10)  # long enough: the origin may have it by now
    assert (await get(gate_viewer, "/hls/http/nope.ts"))[0] == 404
    assert origin.hits["nope.ts"] == 2


@pytest.mark.parametrize("stream_id", ["dir", "http"])
@pytest.mark.parametrize("range_header", [
    "bytes=" + "1" * 5000 + "-", "bytes=\u0663-5", "bytes=\u00b2-", "bytes=0-1,5-9",
    "lines=1-2", "bytes=--5", "bytes=" + "9" * 30 + "-" + "9" * 31])
async def test_a_range_we_do_not_serve_is_ignored(gate_viewer: ViewerClient, ts_dir: Path,
                                                  stream_id: str, range_header: str) -> None:
    """RFC 9110 lets a server ignore a Range it does not support: the whole object."""
    await buy(gate_viewer, stream_id)
    async with gate_viewer.http.get(f"/hls/{stream_id}/seg2.ts",
                                    headers={"Range": range_header.encode().decode(
                                        "latin-1")}) as response:
        assert response.status == 200
        assert await response.read() == (ts_dir / "seg2.ts").read_bytes()


async def test_ranges_and_a_whole_request_share_one_upstream_fetch_and_fill_the_cache(
        gate_viewer: ViewerClient, origin: OriginServer, ts_dir: Path) -> None:
    await buy(gate_viewer, "http")
    whole = (ts_dir / "seg1.ts").read_bytes()
    fetcher = gate_viewer.http.app[GATE].fetcher  # type: ignore[index]
    origin.release = asyncio.Event()
    plain = asyncio.create_task(get(gate_viewer, "/hls/http/seg1.ts"))
    await wait_until(lambda: origin.hits["seg1.ts"] >= 1)
    joined_before = fetcher.coalesced_requests
    ranges = [asyncio.create_task(get(gate_viewer, "/hls/http/seg1.ts", Range=f"bytes={n}-{n + 9}"))
              for n in range(0, 100, 10)]
    await wait_until(lambda: fetcher.coalesced_requests - joined_before == len(ranges))
    origin.release.set()
    assert (await plain)[2] == whole
    for start, (status, _, body) in zip(range(0, 100, 10), await asyncio.gather(*ranges),
                                        strict=True):
        assert (status, body) == (206, whole[start:start + 10])
    # Kept: a later range is cut from memory.
    assert (await get(gate_viewer, "/hls/http/seg1.ts", Range="bytes=5-9"))[2] == whole[5:10]
    assert origin.hits["seg1.ts"] == 1
