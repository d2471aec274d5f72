"""Keys delivery behind a real nginx running `gateway nginx-config --delivery keys`:
nginx keeps one copy of the public, encrypted media for everyone (one request to the
service per object, however many viewers, cookies and query strings), and passes every
key request to the service, which decides it; ffmpeg plays with the viewer's cookie and
decodes nothing without it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.conftest import API_KEY, require_tool, wait_until
from tests.delivery.test_players import video_frames
from tests.gate.conftest import DEMO_SEGMENTS, OriginServer, write_catalog
from tests.gate.test_ffmpeg import run
from tests.nginx_process import Edge, edge_env, edge_in_front, require_nginx

ROTATION_S = 4
_KEY_URI = re.compile(r'URI="(/keys/[^"]+)"')


@pytest.fixture
def catalog(tmp_path: Path, ts_dir: Path, origin: OriginServer) -> Path:
    return write_catalog(tmp_path / "streams.toml", [
        {"id": "dir", "title": "Directory", "price": 1000, "origin": f"file://{ts_dir}/"},
        {"id": "http", "title": "HTTP", "price": 2000, "origin": origin.url()},
        {"id": "loop", "title": "Loop", "price": 3000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True},
    ])


@pytest.fixture
async def edge(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]],
               catalog: Path) -> AsyncIterator[Edge]:
    edge = await edge_in_front(tmp_path, aiohttp_server, catalog, GATEWAY_DELIVERY="keys",
                               GATEWAY_KEY_ROTATION_SECONDS=str(ROTATION_S),
                               GATEWAY_STREAM_CHECK_INTERVAL_SECONDS="300")
    yield edge
    edge.stop()


def browser(edge: Edge) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(edge.url, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def fetch(session: aiohttp.ClientSession, path: str, **headers: str
                ) -> tuple[int, dict[str, str], bytes]:
    async with session.get(path, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def buy(viewer: aiohttp.ClientSession, stream_id: str) -> dict[str, Any]:
    async with viewer.post("/api/generate-qris", json={"streamId": stream_id}) as response:
        qr = (await response.json())["data"]
    async with viewer.post(f"/simulator/pay/{qr['trxId']}") as response:
        assert (await response.json())["data"]["applied"] is True
    async with viewer.get("/api/check-access", params={"streamId": stream_id}) as response:
        access: dict[str, Any] = (await response.json())["data"]
    assert access["hasAccess"]
    return access


def media_lines(playlist: bytes) -> list[str]:
    return [line for line in playlist.decode().splitlines() if line.startswith("/media/")]


async def test_the_config_caches_media_by_path_alone_and_never_the_keys(
        tmp_path: Path, catalog: Path) -> None:
    edge = Edge(tmp_path / "edge", edge_env(tmp_path, catalog), ["http://127.0.0.1:9001"])
    code, output = await edge.generate("--delivery", "keys")
    assert code == 0, output
    code, output = await run(require_nginx(), "-t", "-p", str(edge.prefix), "-c",
                             "nginx.conf", "-e", "logs/error.log")
    assert code == 0, output
    config = (edge.prefix / "nginx.conf").read_text()
    media = config.split("location /media/ {")[1].split("}")[0]
    assert "proxy_cache_key $keys_media_path;" in media  # the path: no cookie, no query
    assert "proxy_cache_lock on;" in media and 'proxy_set_header Cookie "";' in media
    keys = config.split("location /keys/ {")[1].split("}")[0]
    assert "proxy_cache" not in keys and "proxy_pass http://gateway;" in keys
    assert "auth_request" not in config and "location ~" not in config


async def test_a_crowd_costs_the_service_one_request_per_object(
        edge: Edge, origin: OriginServer) -> None:
    viewers = [browser(edge) for _ in range(30)]
    try:
        await buy(viewers[0], "http")  # sold only once the service has checked the origin
        origin.hits.clear()  # forget that check
        for number, viewer in enumerate(viewers):  # every browser carries cookies of its own
            viewer.cookie_jar.update_cookies({"viewer": f"v{number}", "gate": f"g{number}"},
                                             URL(edge.url))
        origin.release = asyncio.Event()  # the origin is slow: everyone asks meanwhile
        queries = ["", "?_HLS_msn=4", "?x=1"]
        playlists = [asyncio.ensure_future(fetch(viewer, f"/media/http/index.m3u8"
                                                         f"{queries[n % 3]}"))
                     for n, viewer in enumerate(viewers)]
        await wait_until(lambda: origin.hits["index.m3u8"] == 1, 20)
        origin.release.set()
        answers = await asyncio.gather(*playlists)
        assert {(status, body) for status, _, body in answers} == {(200, answers[0][2])}
        segment = media_lines(answers[0][2])[2]
        segments = await asyncio.gather(*(fetch(viewer, segment) for viewer in viewers))
        assert len({body for _, _, body in segments}) == 1
        assert {headers["Cache-Control"] for _, headers, _ in segments} == {
            "public, max-age=3600, immutable"}
    finally:
        for viewer in viewers:
            await viewer.close()
    answered = edge.answered[0]
    assert answered.count("/media/http/index.m3u8") == 1
    assert answered.count(segment) == 1
    assert origin.hits["index.m3u8"] == 1 and origin.hits["seg2.ts"] == 1
    assert not [path for path in edge.cookies_seen if path.startswith("/media/")]


async def test_every_key_request_reaches_the_service_which_decides_it(edge: Edge) -> None:
    async with browser(edge) as viewer, browser(edge) as outsider:
        access = await buy(viewer, "dir")
        _, _, playlist = await fetch(outsider, "/media/dir/index.m3u8")
        key_uri = _KEY_URI.findall(playlist.decode())[0]
        for _ in range(3):
            status, headers, key = await fetch(viewer, key_uri)
            assert (status, len(key), headers["Cache-Control"]) == (200, 16,
                                                                    "private, no-store")
        status, headers, refused = await fetch(outsider, key_uri)
        assert (status, headers["Cache-Control"]) == (403, "private, no-store")
        assert b'"code": "no_access"' in refused
        assert edge.answered[0].count(key_uri) == 4
        async with viewer.post(f"/api/sessions/{access['sessionId']}/revoke",
                               headers={"X-Api-Key": API_KEY}) as response:
            assert response.status == 200
        # No decision is reused at this edge: the very next key is refused.
        assert (await fetch(viewer, key_uri))[0] == 403


@pytest.mark.parametrize("stream_id", ["dir", "loop"])
async def test_ffmpeg_decodes_with_the_cookie_and_nothing_without_access(
        edge: Edge, tmp_path: Path, stream_id: str) -> None:
    ffmpeg = require_tool("ffmpeg")
    async with browser(edge) as viewer:
        access = await buy(viewer, stream_id)
        cookie = viewer.cookie_jar.filter_cookies(
            URL(f"{edge.url}/keys/{stream_id}/0-1"))["gate"].value
        # The live loop stands at the live edge: take what it offers.
        duration = ["-t", "3"] if stream_id == "loop" else []
        for form, url, headers in (
                ("cookie", access["playbackUrl"], ["-headers", f"Cookie: gate={cookie}\r\n"]),
                ("path", access["tokenPlaybackUrl"], [])):
            output = tmp_path / f"{stream_id}-{form}.ts"
            code, out = await run(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                                  *headers, "-i", edge.url + url, *duration, "-c", "copy",
                                  str(output))
            assert code == 0, out
            assert await video_frames(str(output)) >= 50, form  # 2 s and more of picture
        # The same playlist and segments, fetched without access: the key is refused,
        # and what was fetched decodes to nothing, with the refused key or with none.
        # With the keys the viewer is given, that same copy plays.
        keys = {uri: (await fetch(viewer, uri))[2]
                for uri in set(_KEY_URI.findall(
                    (await fetch(viewer, access["playbackUrl"]))[2].decode()))}
    async with browser(edge) as outsider:
        _, _, playlist = await fetch(outsider, access["playbackUrl"])
        for key_uri in set(_KEY_URI.findall(playlist.decode())):
            assert (await fetch(outsider, key_uri))[0] == 403
        copy = tmp_path / f"copy-{stream_id}"
        copy.mkdir()
        lines = []
        for line in playlist.decode().splitlines():
            if line.startswith("/media/"):
                status, _, body = await fetch(outsider, line)
                assert status == 200  # public, and useless
                line = f"{len(lines)}.ts"
                (copy / line).write_bytes(body)
            lines.append(line.replace('URI="/keys/', f'URI="{edge.url}/keys/'))
    lines.append("#EXT-X-ENDLIST")  # a copy: it ends where the fetch did
    (copy / "refused.m3u8").write_text("\n".join(lines) + "\n")
    (copy / "keyless.m3u8").write_text("\n".join(
        line for line in lines if not line.startswith("#EXT-X-KEY")) + "\n")
    assert await local_frames(copy / "refused.m3u8") == 0
    assert await local_frames(copy / "keyless.m3u8") == 0
    given = "\n".join(lines)
    for number, (uri, key) in enumerate(keys.items()):
        (copy / f"{number}.key").write_bytes(key)
        given = given.replace(f'URI="{edge.url}{uri}"', f'URI="{number}.key"')
    (copy / "given.m3u8").write_text(given + "\n")
    assert await local_frames(copy / "given.m3u8") >= 25


async def local_frames(playlist: Path) -> int:
    """Video frames ffprobe decodes from a copied playlist (which may name the key's
    URL at the edge); 0 when it cannot open or decode it."""
    code, out = await run(require_tool("ffprobe"), "-v", "error", "-allowed_extensions",
                          "ALL", "-protocol_whitelist",
                          "file,http,tcp,crypto,data", "-count_frames", "-select_streams",
                          "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0",
                          str(playlist))
    counted = out.strip().splitlines()[-1] if out.strip() else ""
    return int(counted) if code == 0 and counted.isdigit() else 0
