"""The gate's URL grammar: one reading of /hls/ URIs for the route table, nginx's auth
subrequests and the generated configuration, and the URLs a viewer is handed."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from gateway.gate import urls
from gateway.gate.paths import MediaKind, media_path_pcre
from gateway.media_routes import MediaResource


async def _never(request: web.Request) -> web.StreamResponse:
    raise AssertionError("not called")


@pytest.mark.parametrize(("uri", "target"), [
    ("/hls/s/index.m3u8", ("s", None, "index.m3u8")),
    ("/hls/s/t/TOK/a/b.ts?_HLS_msn=3", ("s", "TOK", "a/b.ts")),
    ("/hls/s/t/seg.ts", ("s", None, "t/seg.ts")),  # as the route table reads it
    ("/hls/s/seg%31.ts", ("s", None, "seg1.ts")),
    ("/hls/s/", None),
    ("/hls/", None),
    ("/api/streams", None),
])
def test_a_uri_nginx_passes_on_is_read_as_the_route_table_reads_it(
        uri: str, target: tuple[str, str | None, str] | None) -> None:
    assert urls.target_of(uri) == target
    if target is None or "%" in uri:
        return
    # The route table's own resources, tried in its order, agree.
    path = uri.split("?", 1)[0]
    for name, pattern in urls.ROUTES:
        match = MediaResource(pattern, name=name, handler=_never)._match(path)
        if match is not None:
            assert (match["stream_id"], match.get("token"), match["path"]) == target
            break
    else:
        raise AssertionError(f"no route matched {path}")


def test_the_playback_urls_are_the_routes_own() -> None:
    app = web.Application()
    for name, pattern in urls.ROUTES:
        app.router.register_resource(MediaResource(pattern, name=name, handler=_never))
    handed = urls.playback_urls("demo", "index.m3u8", "kid.Zm9v.c2ln")
    assert handed == {
        "playbackUrl": str(app.router["hls"].url_for(stream_id="demo", path="index.m3u8")),
        "tokenPlaybackUrl": str(app.router["hls-token"].url_for(
            stream_id="demo", token="kid.Zm9v.c2ln", path="index.m3u8")),
    }
    assert urls.target_of(handed["tokenPlaybackUrl"]) == ("demo", "kid.Zm9v.c2ln", "index.m3u8")
    assert handed["playbackUrl"].startswith(urls.stream_path("demo"))


@pytest.mark.parametrize("uri", ["/hls/demo/index.m3u8", "/hls/demo/t/kid.Zm9v.c2ln/index.m3u8",
                                 "/hls/demo/t/kid.Zm9v.c2ln/v/seg1.ts", "/hls/demo/seg1.ts"])
def test_nginx_locations_capture_what_the_gate_reads(uri: str) -> None:
    """The PCRE nginx matches captures the same token and media path (Python's `re`
    reads these named groups as PCRE does, once `(?<` is written `(?P<`)."""
    target = urls.target_of(uri)
    assert target is not None
    kind = MediaKind.PLAYLIST if uri.endswith(".m3u8") else MediaKind.SEGMENT
    pcre = urls.nginx_location_pcre("demo", media_path_pcre(kind)).replace("(?<", "(?P<")
    match = re.fullmatch(pcre, uri)
    assert match is not None
    assert (match["gate_token"], match["gate_media"]) == (target.path_token, target.path)


@pytest.mark.parametrize(("header", "token"), [
    (None, None),
    ("gate=kid.Zm9v.c2ln", "kid.Zm9v.c2ln"),
    ("viewer=abc; gate=kid.Zm9v.c2ln; other=1", "kid.Zm9v.c2ln"),
    ("gate = kid.Zm9v.c2ln", None),  # no cookie-pair, as nginx's $cookie_gate reads it
    ("gatekeeper=x", None),
    ("xgate=kid.Zm9v.c2ln", None),
    # Twice: which one counts is not guessed (nginx must decide on the same value).
    ("gate=junk; gate=kid.Zm9v.c2ln", None),
    ("gate=kid.Zm9v.c2ln; gate=kid.Zm9v.c2ln", None),
    ('gate="kid.Zm9v.c2ln"', None),  # not a token's characters
    ("gate=", None),
    ("gate=" + "a" * 513, None),
])
def test_the_gate_cookie_is_read_from_a_cookie_header(header: str | None,
                                                      token: str | None) -> None:
    assert urls.gate_cookie_token(header) == token
