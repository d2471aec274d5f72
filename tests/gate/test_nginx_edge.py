"""The edge for real: Debian's nginx running `gateway nginx-config`'s configuration from
an empty temp prefix, in front of the real service, with ffmpeg as the HLS client.
nginx serves the bytes (from disk, or from an HTTP origin through its cache); the
service only decides, at GET /gate/auth."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.handlers.edge import DECISION_REUSE_S
from tests.conftest import API_KEY, REDIS_URL, require_tool
from tests.gate.conftest import DEMO_SEGMENTS, OriginServer, rfc3339, write_catalog
from tests.gate.test_ffmpeg import probe, run
from tests.nginx_process import Edge, edge_env, edge_in_front, require_nginx

ServerFactory = Callable[..., Awaitable[TestServer]]
EdgeFactory = Callable[..., Awaitable[Edge]]


@pytest.fixture
def catalog(tmp_path: Path, ts_dir: Path, origin: OriginServer) -> Path:
    return write_catalog(tmp_path / "streams.toml", [
        {"id": "dir", "title": "Directory", "price": 1000, "origin": f"file://{ts_dir}/"},
        {"id": "http", "title": "HTTP", "price": 2000, "origin": origin.url()},
        {"id": "loop", "title": "Loop", "price": 3000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True},
    ])


@pytest.fixture
async def make_edge(tmp_path: Path, aiohttp_server: ServerFactory,
                    catalog: Path) -> AsyncIterator[EdgeFactory]:
    """make_edge(instances=1, **env): service instances behind one real nginx."""
    edges: list[Edge] = []

    async def make(instances: int = 1, **overrides: str) -> Edge:
        edge = await edge_in_front(tmp_path, aiohttp_server, catalog, instances, **overrides)
        edges.append(edge)
        return edge

    yield make
    for edge in edges:
        edge.stop()


@pytest.fixture
async def edge(make_edge: EdgeFactory) -> Edge:
    return await make_edge()


def browser(edge: Edge) -> aiohttp.ClientSession:
    """One viewer's browser, talking to nginx only."""
    return aiohttp.ClientSession(edge.url, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def buy(viewer: aiohttp.ClientSession, stream_id: str) -> dict[str, Any]:
    async with viewer.post("/api/generate-qris", json={"streamId": stream_id}) as response:
        assert response.status == 201, await response.text()
        qr = (await response.json())["data"]
    async with viewer.post(f"/simulator/pay/{qr['trxId']}") as response:
        assert (await response.json())["data"]["applied"] is True
    async with viewer.get("/api/check-access", params={"streamId": stream_id}) as response:
        access: dict[str, Any] = (await response.json())["data"]
    assert access["hasAccess"]
    return access


def gate_cookie(viewer: aiohttp.ClientSession, edge: Edge, stream_id: str) -> str:
    cookies = viewer.cookie_jar.filter_cookies(
        URL(f"{edge.url}/hls/{stream_id}/x.ts"))
    return cookies["gate"].value


async def fetch(session: aiohttp.ClientSession, path: str) -> tuple[int, dict[str, str], bytes]:
    async with session.get(path) as response:
        return response.status, dict(response.headers), await response.read()


async def raw_status(edge: Edge, path: str, cookie: str = "") -> int:
    """A request line exactly as written: no client library tidies the path first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\n"
                 f"Cookie: gate={cookie}\r\nConnection: close\r\n\r\n".encode())
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    return int(status_line.split()[1])


def assert_refused(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 403, body
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(rb'\{"success":false,"error":"[^"]+","code":"no_access"\}', body), body


async def test_the_config_runs_unprivileged_from_an_empty_prefix(tmp_path: Path,
                                                                 catalog: Path) -> None:
    edge = Edge(tmp_path / "fresh" / "edge", edge_env(tmp_path, catalog),
                ["http://127.0.0.1:9001", "http://127.0.0.1:9002"])
    code, output = await edge.generate()
    assert code == 0, output
    config = (edge.prefix / "nginx.conf").read_text()
    code, output = await run(require_nginx(), "-t", "-p", str(edge.prefix), "-c", "nginx.conf",
                             "-e", "logs/error.log")
    assert code == 0, output
    # Every file nginx writes is under the prefix; it reads media from the catalog's folder.
    written = re.findall(r'(?:pid|error_log|access_log|_temp_path|proxy_cache_path) "([^"]+)"',
                         config)
    assert len(written) == 10 and all(path.startswith(str(edge.prefix)) for path in written)
    # The catalog's streams and nothing else: nginx serves two, the service makes one.
    assert sorted(set(re.findall(r"location [~ ]*\"?\^?/hls/([a-z0-9_-]+)/", config))) == [
        "dir", "http", "loop"]
    assert "server 127.0.0.1:9001;" in config and "server 127.0.0.1:9002;" in config
    for header in ("Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for",
                   "X-Forwarded-Proto $scheme", "Upgrade $http_upgrade"):
        assert f"proxy_set_header {header};" in config


async def test_the_command_names_what_it_cannot_do(tmp_path: Path, catalog: Path) -> None:
    edge = Edge(tmp_path / "edge", edge_env(tmp_path, catalog), ["ftp://127.0.0.1:9001"])
    code, output = await edge.generate()
    assert (code, output.strip()) == (
        2, "gateway: nginx-config: not an http://HOST:PORT URL: 'ftp://127.0.0.1:9001'")
    edge.gateways = []
    code, output = await edge.generate("--tls-cert", str(tmp_path / "cert.pem"))
    assert (code, output.strip()) == (2, "gateway: --tls-cert and --tls-key go together")
    code, output = await edge.generate("--tls-cert", "c.pem", "--tls-key", "k.pem")
    assert code == 0, output
    config = (edge.prefix / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{edge.port} ssl;" in config
    assert f'ssl_certificate "{Path("c.pem").resolve()}";' in config


@pytest.mark.parametrize("stream_id", ["dir", "http", "loop"])
async def test_refused_before_payment_and_ffmpeg_plays_both_forms_after(
        edge: Edge, tmp_path: Path, stream_id: str) -> None:
    ffmpeg = require_tool("ffmpeg")
    async with browser(edge) as viewer:
        status, headers, body = await fetch(viewer, f"/hls/{stream_id}/index.m3u8")
        if stream_id == "loop":  # the service's own gate refused it, through nginx
            assert (status, headers["Cache-Control"]) == (403, "private, no-store")
        else:
            assert_refused(status, headers, body)
        access = await buy(viewer, stream_id)
        cookie = gate_cookie(viewer, edge, stream_id)
    # The live loop's window stands at the live edge: take what it offers.
    duration = ["-t", "3"] if stream_id == "loop" else []
    for form, url, headers_arg in (
            ("cookie", access["playbackUrl"], ["-headers", f"Cookie: gate={cookie}\r\n"]),
            ("path", access["tokenPlaybackUrl"], [])):
        output = tmp_path / f"{stream_id}-{form}.ts"
        code, out = await run(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                              *headers_arg, "-i", edge.url + url, *duration, "-c", "copy",
                              str(output))
        assert code == 0, out
        info = await probe(output)
        assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}  # type: ignore[attr-defined]
        assert float(info["format"]["duration"]) > 2.5  # type: ignore[index]


async def test_nginx_serves_what_the_python_gate_would(edge: Edge,
                                                       origin: OriginServer) -> None:
    origin.cache_control = None  # the origin says nothing: 10 minutes in nginx's cache
    async with browser(edge) as viewer:
        access = await buy(viewer, "http")
        base = access["tokenPlaybackUrl"].rsplit("/", 1)[0]
        status, headers, _ = await fetch(viewer, access["tokenPlaybackUrl"])
        assert status == 200
        assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert headers["Cache-Control"] == "private, no-cache"
        for _ in range(2):
            status, headers, _ = await fetch(viewer, f"{base}/seg2.ts")
            assert (status, headers["Content-Type"]) == (200, "video/mp2t")
            max_age = int(headers["Cache-Control"].removeprefix("private, max-age="))
            assert 3500 < max_age <= 3600
        assert origin.hits["seg2.ts"] == 1  # the second came from nginx's cache
        await buy(viewer, "dir")
        status, headers, _ = await fetch(viewer, "/hls/dir/seg1.ts")
        assert (status, headers["Content-Type"]) == (200, "video/mp2t")
        assert headers["Cache-Control"].startswith("private, max-age=")
    # The service only decided: nginx served every byte.
    assert "/gate/auth" in edge.answered[0]
    assert not [path for path in edge.answered[0] if path.startswith("/hls/")]


async def test_revocation_stops_playback_within_the_decision_lifetime(edge: Edge) -> None:
    async with browser(edge) as viewer:
        access = await buy(viewer, "dir")
        playlist = access["tokenPlaybackUrl"]
        assert (await fetch(viewer, playlist))[0] == 200  # nginx now holds a "yes"
        async with viewer.post(f"/api/sessions/{access['sessionId']}/revoke",
                               headers={"X-Api-Key": API_KEY}) as response:
            assert response.status == 200
        revoked_at = time.monotonic()
        while (status := (await fetch(viewer, playlist))[0]) == 200:
            assert time.monotonic() - revoked_at < DECISION_REUSE_S + 1, "still served"
            await asyncio.sleep(0.2)
        assert status == 403
        assert_refused(*await fetch(viewer, "/hls/dir/seg0.ts"))  # the cookie form too


async def test_expiry_stops_playback_at_once(make_edge: EdgeFactory) -> None:
    edge = await make_edge(GATEWAY_ACCESS_SECONDS="6")
    async with browser(edge) as viewer:
        access = await buy(viewer, "http")
        expires_at = time.monotonic() + access["remainingTime"] / 1000
        while time.monotonic() < expires_at:  # a "yes" is reused as long as nginx may
            assert (await fetch(viewer, access["tokenPlaybackUrl"]))[0] == 200
            await asyncio.sleep(0.3)
        assert_refused(*await fetch(viewer, access["tokenPlaybackUrl"]))


async def test_traversal_attempts_never_reach_the_origin(edge: Edge,
                                                         origin: OriginServer) -> None:
    async with browser(edge) as viewer:
        access = await buy(viewer, "http")
        cookie = gate_cookie(viewer, edge, "http")
    token = access["tokenPlaybackUrl"].split("/")[4]
    origin.hits.clear()  # the service's own check of the origin, at start-up
    attempts = [
        "/hls/http/secret.txt",
        "/hls/http/../http/secret.txt",
        "/hls/http/%2e%2e/outside.ts",
        "/hls/http/..%2foutside.ts",
        "/hls/http/%2E%2E%2Foutside.ts",
        f"/hls/http/t/{token}/%2e%2e/%2e%2e/outside.ts",
        f"/hls/http/t/{token}/..%2f..%2fsecret.txt",
        "/hls/http/.hidden.ts",
        "/hls/http/a/..%5c..%5coutside.ts",
        "/hls/http/http:%2f%2fexample.invalid%2fx.ts",
        "/hls/http/seg1.ts%00.txt",
    ]
    for path in attempts:
        status = await raw_status(edge, path, cookie)
        assert 400 <= status < 500, (path, status)
    assert not origin.hits, origin.hits


async def test_fifty_viewers_of_one_uncached_segment_cost_one_origin_fetch(
        edge: Edge, origin: OriginServer) -> None:
    viewers = [browser(edge) for _ in range(50)]
    try:
        tokens = [(await buy(viewer, "http"))["tokenPlaybackUrl"].rsplit("/", 1)[0]
                  for viewer in viewers]
        origin.release = asyncio.Event()  # the origin holds its answer until told

        async def watch(viewer: aiohttp.ClientSession, base: str) -> tuple[int, bytes]:
            status, _, body = await fetch(viewer, f"{base}/seg3.ts")
            return status, body

        requests = [asyncio.ensure_future(watch(viewer, base))
                    for viewer, base in zip(viewers, tokens, strict=True)]
        deadline = time.monotonic() + 20
        while origin.hits["seg3.ts"] == 0:
            assert time.monotonic() < deadline, "nginx never asked the origin"
            await asyncio.sleep(0.05)
        origin.release.set()
        results = await asyncio.gather(*requests)
    finally:
        for viewer in viewers:
            await viewer.close()
    expected = (origin.root / "seg3.ts").read_bytes()
    assert results == [(200, expected)] * 50
    assert origin.hits["seg3.ts"] == 1


async def test_two_instances_on_one_redis_behind_one_nginx(make_edge: EdgeFactory,
                                                           redis_prefix: str) -> None:
    edge = await make_edge(instances=2, GATEWAY_STORE=REDIS_URL,
                           GATEWAY_REDIS_KEY_PREFIX=redis_prefix)
    async with browser(edge) as viewer:
        async with viewer.post("/api/generate-qris", json={"streamId": "dir"}) as response:
            qr = (await response.json())["data"]
        # The socket lands on one instance, the provider's callback on whichever nginx
        # picks: the payment still reaches the page.
        async with viewer.ws_connect(f"/ws?sessionId={qr['sessionId']}",
                                     headers={"Origin": edge.url}) as socket:
            assert (await socket.receive_json())["status"] == "pending"
            async with viewer.post(f"/simulator/pay/{qr['trxId']}") as response:
                assert (await response.json())["data"]["applied"] is True
            async with asyncio.timeout(10):
                while (message := await socket.receive_json())["status"] != "paid":
                    pass
        assert message["sessionId"] == qr["sessionId"]
        async with viewer.get("/api/check-access", params={"streamId": "dir"}) as response:
            access = (await response.json())["data"]
        for _ in range(4):  # decisions from both instances (round robin), all "yes"
            assert (await fetch(viewer, "/hls/dir/index.m3u8"))[0] == 200
            await fetch(viewer, f"/hls/dir/seg{_}.ts")
        async with viewer.post(f"/api/sessions/{access['sessionId']}/revoke",
                               headers={"X-Api-Key": API_KEY}) as response:
            assert response.status == 200
        revoked_at = time.monotonic()
        while (await fetch(viewer, access["tokenPlaybackUrl"]))[0] == 200:
            assert time.monotonic() - revoked_at < DECISION_REUSE_S + 2, "still served"
            await asyncio.sleep(0.2)
        assert_refused(*await fetch(viewer, access["tokenPlaybackUrl"]))
    assert all(len(paths) > 2 for paths in edge.answered), edge.answered


async def test_playlists_are_at_most_a_second_old_and_the_origin_may_forbid_caching(
        edge: Edge, origin: OriginServer) -> None:
    async with browser(edge) as viewer:
        access = await buy(viewer, "http")
        playlist = access["tokenPlaybackUrl"]
        base = playlist.rsplit("/", 1)[0]
        origin.cache_control = "max-age=60"  # nginx keeps the segment, not the playlist
        for _ in range(2):
            assert (await fetch(viewer, f"{base}/seg0.ts"))[0] == 200
        assert origin.hits["seg0.ts"] == 1
        assert (await fetch(viewer, playlist))[0] == 200
        asked_at = time.monotonic()
        while origin.hits["index.m3u8"] < 2:  # nginx's clock counts whole seconds
            assert time.monotonic() - asked_at < 2.5, "a playlist older than a second"
            assert (await fetch(viewer, playlist))[0] == 200
            await asyncio.sleep(0.1)

        origin.cache_control = "no-store"
        for _ in range(2):
            assert (await fetch(viewer, f"{base}/seg1.ts"))[0] == 200
        assert origin.hits["seg1.ts"] == 2


async def test_a_live_playlist_rewritten_in_place_is_served_whole_at_once(
        edge: Edge, ts_dir: Path) -> None:
    """nginx keeps files open between requests (open_file_cache); a packager that
    rewrites a playlist in place must still have every viewer get all of the new one,
    not the old one or its first bytes, and a segment added since must play."""
    playlist = ts_dir / "index.m3u8"
    async with browser(edge) as viewer:
        access = await buy(viewer, "dir")
        for _ in range(3):  # opened and remembered by nginx, if it remembers playlists
            status, _, before = await fetch(viewer, access["tokenPlaybackUrl"])
            assert (status, before) == (200, playlist.read_bytes())
        longer = before.replace(b"#EXT-X-ENDLIST\n", b"") + b"#EXTINF:2.0,\nseg-new.ts\n"
        with playlist.open("r+b") as file:  # the same inode, a bigger file
            file.write(longer)
        (ts_dir / "seg-new.ts").write_bytes((ts_dir / "seg1.ts").read_bytes())
        status, _, after = await fetch(viewer, access["tokenPlaybackUrl"])
        assert (status, after) == (200, longer)
        base = access["tokenPlaybackUrl"].rsplit("/", 1)[0]
        status, _, segment = await fetch(viewer, f"{base}/seg-new.ts")
        assert (status, segment) == (200, (ts_dir / "seg1.ts").read_bytes())


async def test_a_shared_link_meets_the_device_limit_behind_nginx(edge: Edge) -> None:
    """Issue 11 at the edge: three machines (127.0.0.2, .3, .4) play one purchase's
    `tokenPlaybackUrl` through nginx, which serves the bytes; with the default limit of 2
    the third is refused, in the viewer's language, and the two playing play on."""
    async with browser(edge) as viewer:
        link = (await buy(viewer, "dir"))["tokenPlaybackUrl"]
    machines = [aiohttp.ClientSession(
        edge.url, connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{n}", 0)))
        for n in (2, 3, 4)]
    try:
        first, second, third = machines
        assert (await fetch(first, link))[0] == 200
        assert (await fetch(second, link))[0] == 200
        status, headers, body = await fetch(third, link)
        assert (status, headers["Cache-Control"]) == (403, "private, no-store")
        assert b'"code":"device_limit"' in body and b"perangkat lain" in body
        async with third.get(link, headers={"Accept-Language": "en"}) as response:
            assert b"another device" in await response.read()
        base = link.rsplit("/", 1)[0]
        assert (await fetch(first, f"{base}/seg1.ts"))[0] == 200
        assert (await fetch(second, f"{base}/seg1.ts"))[0] == 200
    finally:
        for machine in machines:
            await machine.close()


async def test_a_revoked_ticket_stops_within_the_decision_lifetime_whatever_its_window(
        tmp_path: Path, ts_dir: Path, aiohttp_server: ServerFactory) -> None:
    """Tickets whose tokens outlive `paidAt` + the default window (5 s here): a stream's
    own window, a show bought ahead, a renewal. Each is revoked while nginx holds a
    "yes" for it, and must be refused in both token forms within that "yes"'s life."""
    show_starts_ms = int(time.time() * 1000) + 12_000
    catalog = write_catalog(tmp_path / "windows.toml", [
        {"id": "own", "title": "Own", "price": 1000, "origin": f"file://{ts_dir}/",
         "access_seconds": 600},
        {"id": "ahead", "title": "Show", "price": 1000, "origin": f"file://{ts_dir}/",
         "access_seconds": 600, "starts_at": rfc3339(show_starts_ms)},
        {"id": "brief", "title": "Brief", "price": 1000, "origin": f"file://{ts_dir}/",
         "access_seconds": 8},
    ])
    edge = await edge_in_front(tmp_path, aiohttp_server, catalog, GATEWAY_ACCESS_SECONDS="5")

    async def revoke_while_playing(viewer: aiohttp.ClientSession,
                                   access: dict[str, Any]) -> None:
        urls = (access["playbackUrl"], access["tokenPlaybackUrl"])
        for url in urls:
            assert (await fetch(viewer, url))[0] == 200  # nginx now holds a "yes"
        async with viewer.post(f"/api/sessions/{access['sessionId']}/revoke",
                               headers={"X-Api-Key": API_KEY}) as response:
            assert response.status == 200
        revoked_at = time.monotonic()
        for url in urls:
            while (status := (await fetch(viewer, url))[0]) == 200:
                assert time.monotonic() - revoked_at < DECISION_REUSE_S + 1, (url, "served")
                await asyncio.sleep(0.2)
            assert status == 403

    async def own_window(viewer: aiohttp.ClientSession) -> None:
        access = await buy(viewer, "own")
        await asyncio.sleep(6)  # past paidAt + the default window
        await revoke_while_playing(viewer, access)

    async def bought_ahead(viewer: aiohttp.ClientSession) -> None:
        async with viewer.post("/api/generate-qris", json={"streamId": "ahead"}) as response:
            qr = (await response.json())["data"]
        async with viewer.post(f"/simulator/pay/{qr['trxId']}") as response:
            assert (await response.json())["data"]["applied"] is True
        await asyncio.sleep(max(0, show_starts_ms / 1000 - time.time()) + 0.5)
        async with viewer.get("/api/check-access", params={"streamId": "ahead"}) as response:
            access = (await response.json())["data"]
        assert access["hasAccess"] and access["sessionId"] == qr["sessionId"]
        await revoke_while_playing(viewer, access)

    async def renewal(viewer: aiohttp.ClientSession) -> None:
        first = await buy(viewer, "brief")  # 8 s: renewable from the start
        async with viewer.post("/api/generate-qris", json={"streamId": "brief"}) as response:
            assert response.status == 201
            qr = (await response.json())["data"]
        async with viewer.post(f"/simulator/pay/{qr['trxId']}") as response:
            assert (await response.json())["data"]["applied"] is True
        while True:  # the first window runs out; the renewal's opens without a gap
            async with viewer.get("/api/check-access",
                                  params={"streamId": "brief"}) as response:
                access = (await response.json())["data"]
            if access["sessionId"] != first["sessionId"]:
                break
            await asyncio.sleep(0.2)
        assert access["hasAccess"] and access["sessionId"] == qr["sessionId"]
        await revoke_while_playing(viewer, access)

    try:
        async with browser(edge) as a, browser(edge) as b, browser(edge) as c:
            await asyncio.gather(own_window(a), bought_ahead(b), renewal(c))
    finally:
        edge.stop()


async def test_a_decision_is_cached_under_the_credential_it_was_made_on(edge: Edge) -> None:
    """A request carrying the gate cookie twice has no credential, in nginx as in the
    service: its refusal is never cached under one of its copies, and no copy opens
    anything for the other."""
    async with browser(edge) as viewer:
        await buy(viewer, "dir")
        valid = gate_cookie(viewer, edge, "dir")

    async def status(cookie_header: str) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(f"GET /hls/dir/index.m3u8 HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\n"
                     f"Cookie: {cookie_header}\r\nConnection: close\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        return int(status_line.split()[1])

    assert await status(f"gate=junk; gate={valid}") == 403
    assert await status("gate=junk") == 403  # no "yes" was stored under junk
    assert await status(f"gate={valid}; gate=junk") == 403
    assert await status(f"gate={valid}") == 200  # nor a "no" under the valid one
    assert await status(f"other=1; gate={valid}") == 200
