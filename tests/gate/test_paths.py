"""No request leaves the origin, however the path is spelled. Requests are written as raw
bytes, so that no client library tidies the path before the gate sees it."""

from __future__ import annotations

import asyncio

import pytest

from gateway.gate.paths import media_path, upstream_query
from tests.conftest import ViewerClient
from tests.gate.conftest import OriginServer, buy


async def raw_get(viewer: ViewerClient, target: str, cookie: str) -> tuple[int, bytes]:
    server = viewer.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nCookie: gate={cookie}\r\n"
                 "Connection: close\r\n\r\n".encode("latin-1"))
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


TRAVERSALS = [
    "/hls/dir/../outside.ts",
    "/hls/dir/..%2Foutside.ts",
    "/hls/dir/%2e%2e/outside.ts",
    "/hls/dir/%2E%2E%2Foutside.ts",
    "/hls/dir/%252e%252e%252foutside.ts",
    "/hls/dir/..%5Coutside.ts",
    "/hls/dir/sub/..%5C..%5Coutside.ts",
    "/hls/dir/.%2e/outside.ts",
    "/hls/dir//etc/passwd",
    "/hls/dir/%2Fetc%2Fpasswd",
    "/hls/dir/http://evil.example/x.ts",
    "/hls/dir/http:%2F%2Fevil.example%2Fx.ts",
    "/hls/dir/seg0.ts%00.m3u8",
    "/hls/dir/seg0.ts%00",
    "/hls/dir/secret.txt",
    "/hls/dir/.hidden.ts",
    "/hls/http/..%2F..%2Fsecret.txt",
    "/hls/http/%2e%2e/outside.ts",
    "/hls/http//evil.example/x.ts",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_paths_cannot_leave_the_origin(gate_viewer: ViewerClient, origin: OriginServer,
                                             target: str) -> None:
    stream_id = target.split("/")[2]
    access = await buy(gate_viewer, stream_id)
    cookie = access["tokenPlaybackUrl"].split("/")[4]
    control, _ = await raw_get(gate_viewer, f"/hls/{stream_id}/seg0.ts", cookie)
    assert control == 200  # the same request with an honest path gets through
    status, body = await raw_get(gate_viewer, target, cookie)
    assert status in (400, 403, 404), (status, body)
    assert b"must never be served" not in body and b"not media" not in body
    assert b"root:" not in body
    # Nothing odd reached the HTTP origin either.
    assert all(path == "index.m3u8" or (path.endswith(".ts") and "/" not in path
                                        and ".." not in path) for path in origin.hits), origin.hits


@pytest.mark.parametrize("raw", ["../a.ts", "a/../b.ts", "/a.ts", "a\\b.ts", "a.ts\x00",
                                 ".a.ts", "a/.b/c.ts", "a.txt", "a", "a%2e.ts", "a:b.ts",
                                 "x" * 2000 + ".ts"])
def test_media_path_refuses(raw: str) -> None:
    with pytest.raises(Exception) as refused:
        media_path(raw)
    assert refused.value.__class__.__name__ == "InvalidRequest"


def test_media_path_accepts_ordinary_names() -> None:
    assert media_path("index.m3u8").kind.value == "playlist"
    assert media_path("720p/chunk-00012.m4s").content_type == "video/iso.segment"
    assert media_path("subs/id.vtt").content_type == "text/vtt"


def test_only_ll_hls_directives_pass_upstream() -> None:
    assert upstream_query({"_HLS_msn": "12", "_HLS_part": "3", "token": "x",
                           "_HLS_skip": "YES", "_HLS_evil": "a b"}) == {
        "_HLS_msn": "12", "_HLS_part": "3", "_HLS_skip": "YES"}
