"""The media routes' own matching (media_routes.py:MediaResource) against aiohttp's: it
splits paths instead of running aiohttp's pattern, and must match exactly the same
paths, with the same values, or a URL would reach the gate that aiohttp would refuse
(or the other way round)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.media_routes import MediaDoor, MediaResource
from tests.conftest import ViewerClient
from tests.gate.conftest import buy

TEMPLATES = (
    "/hls/{stream_id}/t/{token}/{path:.+}",  # the route table's two
    "/hls/{stream_id}/{path:.+}",
    "/bare/{name}",  # bench/bare_in_gateway.py's
)


async def _never(request: web.Request) -> web.StreamResponse:
    raise AssertionError("a route that only matches")


TOKEN = "9ccbe2e4.STVzeXo1T1pETmswWXloN3VYUEpiQXxkaXJ8MTc5NTk2NTQ4OTU5NH.elX7h2rfN1gTiXJm"

# Paths made of what decides a match: the literal segments, empty segments, braces,
# percent-escapes (%2F and %25 are the ones aiohttp unquotes) and newlines.
_SEGMENTS = st.one_of(
    st.sampled_from(["t", "dir", TOKEN, "index.m3u8", "seg1.ts", ""]),
    st.text(alphabet="ab.{}%2F5\nt/", max_size=5))
PATHS = st.tuples(st.sampled_from(["hls", "hls/dir/t", "hls/d{/t", "bare", "x", ""]),
                  st.lists(_SEGMENTS, max_size=6)
                  ).map(lambda parts: "/" + "/".join([parts[0], *parts[1]]))


@settings(max_examples=3000, deadline=None, database=None)
@given(path=PATHS)
def test_the_media_routes_match_what_aiohttp_matches(path: str) -> None:
    for template in TEMPLATES:
        ours = MediaResource(template, name="ours", handler=_never)
        aiohttps = web.DynamicResource(template, name="theirs")
        assert ours._match(path) == aiohttps._match(path), (template, path)


@pytest.mark.parametrize(("path", "expected"), [
    (f"/hls/dir/t/{TOKEN}/index.m3u8", {"stream_id": "dir", "token": TOKEN,
                                        "path": "index.m3u8"}),
    (f"/hls/dir/t/{TOKEN}/v1/seg1.ts", {"stream_id": "dir", "token": TOKEN,
                                        "path": "v1/seg1.ts"}),
    (f"/hls/dir/t/{TOKEN}/", None),  # no file
    ("/hls//t/x/index.m3u8", None),  # no stream
    ("/hls/dir/t/a%2Fb/index.m3u8", {"stream_id": "dir", "token": "a/b",
                                     "path": "index.m3u8"}),
    ("/hls/d{r/t/x/index.m3u8", None),
])
def test_the_token_form_is_split_as_aiohttp_would(path: str,
                                                   expected: dict[str, str] | None) -> None:
    template = TEMPLATES[0]
    assert MediaResource(template, name="ours", handler=_never)._match(path) == expected
    assert web.DynamicResource(template)._match(path) == expected


def test_a_route_with_a_pattern_it_cannot_split_is_refused() -> None:
    with pytest.raises(ValueError, match="only a last variable"):
        MediaResource("/hls/{stream_id:[a-z]+}/{path:.+}", name="x", handler=_never)
    with pytest.raises(ValueError, match="only a last variable"):
        MediaResource("/hls/{stream_id}/{n:[0-9]+}", name="y", handler=_never)


# What the door (media_routes.py:MediaDoor) takes straight to the gate, and what it
# leaves to the application: (method, path, headers, taken by the door).
DOOR_CASES: list[tuple[str, str, dict[str, str], bool]] = [
    ("GET", "{token_base}/index.m3u8", {}, True),
    ("GET", "{token_base}/{segment}", {}, True),
    ("GET", "{token_base}/{segment}", {"Range": "bytes=10-19"}, True),
    ("HEAD", "{token_base}/index.m3u8", {}, True),
    ("GET", "/hls/demo/index.m3u8", {}, True),  # the cookie form
    ("GET", "{token_base}/index.m3u8?_HLS_msn=1&x=%7B", {}, True),
    ("GET", "/hls/demo/t/a%2Fb/index.m3u8", {}, True),  # aiohttp's pattern decides
    ("GET", "/hls/nowhere/index.m3u8", {}, True),
    ("GET", "/hls/demo/t/forged/index.m3u8", {}, True),
    ("GET", "{token_base}/secret.txt", {}, True),
    ("GET", "{token_base}/..%2F..%2Fsettings.py", {}, True),
    ("POST", "{token_base}/index.m3u8", {}, False),  # 405 with Allow
    ("OPTIONS", "/hls/demo/index.m3u8", {}, False),
    ("GET", "{token_base}/index.m3u8", {"Expect": "100-continue"}, False),
    ("GET", "{token_base}/./index.m3u8", {}, True),
    ("GET", "{token_base}/x/../index.m3u8", {}, True),
    ("GET", "/hls/demo//index.m3u8", {}, True),
    ("GET", "//hls/demo/index.m3u8", {}, False),
    ("GET", "/hls/demo/", {}, False),  # no route
    ("GET", "/hls", {}, False),
    ("GET", "/api/streams", {}, False),
]


async def test_the_media_door_answers_as_the_application_would(viewer: ViewerClient) -> None:
    access = await buy(viewer, "demo")
    token_base = access["tokenPlaybackUrl"].rsplit("/", 1)[0]
    async with viewer.http.get(access["playbackUrl"]) as response:
        segment = next(line for line in (await response.text()).splitlines()
                       if line and not line.startswith("#"))
    server = viewer.http.server.runner.server
    assert server is not None and isinstance(server.request_handler, MediaDoor)
    door = server.request_handler

    async def answers(handler: Any) -> list[tuple[int, dict[str, str], bytes]]:
        server.request_handler = handler  # read by each new connection
        got = []
        # A connection per request, each made with `handler` in place.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         cookie_jar=viewer.http.session.cookie_jar) as http:
            for method, path, headers, _ in DOOR_CASES:
                url = URL(str(viewer.http.make_url("/")).rstrip("/") + path.format(
                    token_base=token_base, segment=segment), encoded=True)
                async with http.request(method, url, headers=headers) as response:
                    got.append((response.status,
                                {name: value for name, value in response.headers.items()
                                 if name != "Date"}, await response.read()))
        return got

    taken_before = door.taken
    through_the_door = await answers(door)
    assert door.taken - taken_before == sum(taken for *_, taken in DOOR_CASES)
    through_the_application = await answers(door.routed)
    assert door.taken - taken_before == sum(taken for *_, taken in DOOR_CASES)
    for case, ours, theirs in zip(DOOR_CASES, through_the_door, through_the_application,
                                  strict=True):
        assert ours == theirs, case
    statuses = [status for status, _, _ in through_the_door]
    assert statuses[:5] == [200, 200, 206, 200, 200] and 405 in statuses


async def _elsewhere(request: web.Request) -> web.Response:
    return web.Response()


def _on_a_domain(app: web.Application) -> None:
    other = web.Application()
    other.router.add_get("/hls/{stream_id}/{path:.+}", _elsewhere)
    app.add_domain("admin.example", other)


@pytest.mark.parametrize("add_route", [
    lambda app: app.router.add_get("/hls/{stream_id}/live/{name}", _elsewhere),
    lambda app: app.router.add_static("/hls/", "."),
    _on_a_domain,
], ids=["route", "static", "domain"])
def test_the_media_door_refuses_to_open_over_a_route_the_router_tries_first(
        add_route: Any) -> None:
    app = web.Application()
    app.router.register_resource(
        MediaResource("/hls/{stream_id}/{path:.+}", name="hls", handler=_never))
    add_route(app)
    with pytest.raises(ValueError, match="under a media route's prefix"):
        MediaDoor(app, _elsewhere)  # the router would try it first: the door would not


async def test_the_aiohttp_internals_the_media_routes_rely_on_are_all_there() -> None:
    """setup.cfg pins aiohttp below its next minor version because of these (listed in
    gateway/media_routes.py and gateway/serve.py). Upgrading is a deliberate act: this
    names what is gone."""
    import inspect

    from aiohttp import web_protocol, web_server, web_urldispatcher
    from aiohttp.test_utils import make_mocked_request

    handle_source = inspect.getsource(web.Application._handle)
    checks = {
        "UrlDispatcher._get_resource_index_key":
            callable(getattr(web.UrlDispatcher, "_get_resource_index_key", None)),
        "BaseRequest._match_info (set as Application._handle sets it)":
            hasattr(make_mocked_request("GET", "/"), "_match_info")
            and "request._match_info = match_info" in handle_source,
        "DynamicResource._match": callable(getattr(web.DynamicResource, "_match", None)),
        "web_urldispatcher.MatchedSubAppResource":
            isinstance(getattr(web_urldispatcher, "MatchedSubAppResource", None), type),
        "Application._handle building the middleware chain from UrlMappingMatchInfo.apps":
            "match_info.apps" in handle_source,
        "Server.request_handler": hasattr(web_server.Server(_never), "request_handler"),
        # gateway/serve.py's connection guard:
        "Server._loop and Server._kwargs": all(
            hasattr(web_server.Server(_never), name) for name in ("_loop", "_kwargs")),
        "RequestHandler._waiter and _current_request": all(
            name in web_protocol.RequestHandler.__slots__
            for name in ("_waiter", "_current_request")),
    }
    missing = [name for name, present in checks.items() if not present]
    assert not missing, (
        "aiohttp changed what gateway/media_routes.py or gateway/serve.py relies on; "
        f"adapt them before raising the pin in setup.cfg: {missing}")
