"""Keys delivery in the running service (GATEWAY_DELIVERY=keys), on each store: public
encrypted media under /media/, keys under /keys/ for viewers with access only, decided
as the gate decides, every instance making the same bytes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.delivery.crypto import decrypt_segment
from gateway.delivery.keys import StreamKeys
from gateway.delivery.service import (
    KEY_CACHE_CONTROL,
    PLAYLIST_CACHE_CONTROL,
    SEGMENT_CACHE_CONTROL,
)
from gateway.keys import GATE, KEYS_DELIVERY, SESSIONS, STORE
from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
    wait_until,
)
from tests.delivery.conftest import STREAM_SECONDS, VIDEO_FPS
from tests.delivery.test_players import video_frames
from tests.gate.conftest import DEMO_SEGMENTS, OriginServer, buy, write_catalog

ROTATION_S = 4  # two 2 s segments per key: the 8 s test stream changes key
API = {"X-Api-Key": API_KEY}
_KEY_LINE = re.compile(r'#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)",IV=0x([0-9A-F]{32})')


def keys_settings(settings: Settings, tmp_path: Path, catalog: Path, **overrides: str
                  ) -> Settings:
    """Keys delivery on the store `settings` names (each backend in turn)."""
    return make_settings(tmp_path, **{
        "GATEWAY_STREAMS": str(catalog), "GATEWAY_STORE": settings.store_url,
        "GATEWAY_REDIS_KEY_PREFIX": settings.redis_key_prefix, "GATEWAY_DELIVERY": "keys",
        "GATEWAY_KEY_ROTATION_SECONDS": str(ROTATION_S),
        "GATEWAY_TRUSTED_PROXIES": "127.0.0.1", "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "1",
        "GATEWAY_STREAM_CHECK_INTERVAL_SECONDS": "300", **overrides})


@pytest.fixture
def catalog(tmp_path: Path, ts_dir: Path, origin: OriginServer) -> Path:
    return write_catalog(tmp_path / "streams.toml", [
        {"id": "dir", "title": "Directory", "price": 1000, "origin": f"file://{ts_dir}/"},
        {"id": "http", "title": "HTTP", "price": 2000, "origin": origin.url()},
        {"id": "loop", "title": "Loop", "price": 3000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True},
    ])


@pytest.fixture
async def buyer(make_viewer: AppFactory, settings: Settings, tmp_path: Path,
                catalog: Path) -> ViewerClient:
    return await make_viewer(keys_settings(settings, tmp_path, catalog))


@pytest.fixture
async def outsider(buyer: ViewerClient, make_viewer: AppFactory) -> ViewerClient:
    return await make_viewer()  # another browser on the same service, without a ticket


@dataclass(frozen=True)
class Segment:
    key_uri: str
    iv: bytes
    url: str
    origin_name: str  # the file under the origin


def segments_of(playlist: str) -> list[Segment]:
    found, key = [], None
    for line in playlist.splitlines():
        if (match := _KEY_LINE.fullmatch(line)) is not None:
            key = match
        elif line.startswith("/media/"):
            assert key is not None, line
            found.append(Segment(key.group(1), bytes.fromhex(key.group(2)), line,
                                 line.rsplit("/", 1)[1]))
    return found


async def fetch(client: ViewerClient, path: str, **headers: str
                ) -> tuple[int, dict[str, str], bytes]:
    async with client.http.get(path, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def fetch_with(client: ViewerClient, path: str, token: str, **headers: str
                     ) -> tuple[int, bytes]:
    """`path` asked with only this gate cookie (no cookie jar): a player holding it."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session, \
            session.get(client.http.make_url(path),
                        headers={"Cookie": f"gate={token}", **headers}) as response:
        return response.status, await response.read()


def gate_token(client: ViewerClient, key_uri: str) -> str:
    """The gate cookie the client's browser holds for this key."""
    return str(client.http.session.cookie_jar.filter_cookies(
        client.http.make_url(key_uri))["gate"].value)


def delivery_of(client: ViewerClient) -> Any:
    app = client.http.app
    assert app is not None
    return app[KEYS_DELIVERY]


async def test_check_access_hands_media_urls_and_a_cookie_for_the_keys_only(
        buyer: ViewerClient) -> None:
    qr = await buyer.generate_qris("dir")
    await buyer.pay(qr["trxId"])
    async with buyer.http.get("/api/check-access", params={"streamId": "dir"}) as response:
        access = (await response.json())["data"]
        cookie = next(value for value in response.headers.getall("Set-Cookie")
                      if value.startswith("gate="))
    assert access["playbackUrl"] == "/media/dir/index.m3u8"
    token = cookie.split(";")[0].removeprefix("gate=")
    assert access["tokenPlaybackUrl"] == f"/media/dir/t/{token}/index.m3u8"
    # The media needs no cookie, so a CDN never sees it: it goes where the keys are.
    assert "Path=/keys/dir/;" in cookie and "HttpOnly" in cookie


@pytest.mark.parametrize("stream_id", ["dir", "http"])
async def test_anyone_gets_the_media_and_only_a_buyer_the_keys_that_decrypt_it(
        buyer: ViewerClient, outsider: ViewerClient, ts_dir: Path, stream_id: str) -> None:
    await buy(buyer, stream_id)
    status, headers, body = await fetch(outsider, f"/media/{stream_id}/index.m3u8")
    assert status == 200 and headers["Cache-Control"] == PLAYLIST_CACHE_CONTROL
    assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert "Set-Cookie" not in headers  # a shared cache may keep it
    segments = segments_of(body.decode())
    assert [segment.origin_name for segment in segments] == [f"seg{n}.ts" for n in range(4)]
    assert len({segment.key_uri for segment in segments}) == 2  # a new key every 4 s
    for segment in segments:
        status, headers, encrypted = await fetch(outsider, segment.url)
        assert status == 200 and headers["Cache-Control"] == SEGMENT_CACHE_CONTROL
        assert headers["Content-Type"] == "video/mp2t" and "Set-Cookie" not in headers
        clear = (ts_dir / segment.origin_name).read_bytes()
        assert encrypted != clear and len(encrypted) == len(clear) // 16 * 16 + 16

        status, headers, refused = await fetch(outsider, segment.key_uri)
        assert status == 403 and headers["Cache-Control"] == KEY_CACHE_CONTROL
        assert refused.startswith(b'{"success": false') and b'"code": "no_access"' in refused
        status, headers, key = await fetch(buyer, segment.key_uri)
        assert status == 200 and headers["Cache-Control"] == KEY_CACHE_CONTROL
        assert decrypt_segment(encrypted, key, segment.iv) == clear


async def test_the_path_token_form_names_keys_that_carry_the_token(
        buyer: ViewerClient, outsider: ViewerClient, ts_dir: Path) -> None:
    access = await buy(buyer, "dir")
    status, _, body = await fetch(outsider, access["tokenPlaybackUrl"])
    assert status == 200
    token = access["tokenPlaybackUrl"].split("/")[4]
    segment = segments_of(body.decode())[0]
    assert segment.key_uri.startswith(f"/keys/dir/t/{token}/")
    _, _, encrypted = await fetch(outsider, segment.url)
    status, _, key = await fetch(outsider, segment.key_uri)  # no cookie: the path's token
    assert status == 200
    assert decrypt_segment(encrypted, key, segment.iv) == (ts_dir / "seg0.ts").read_bytes()


async def test_a_segment_is_fetched_and_encrypted_once_however_many_ask(
        buyer: ViewerClient, origin: OriginServer) -> None:
    await buy(buyer, "http")
    _, _, body = await fetch(buyer, "/media/http/index.m3u8")
    segment = segments_of(body.decode())[1]
    origin.release = asyncio.Event()  # every viewer asks while the origin is slow
    answers = [asyncio.ensure_future(fetch(buyer, segment.url)) for _ in range(30)]
    await wait_until(lambda: origin.hits["seg1.ts"] == 1)
    origin.release.set()
    bodies = {body for status, _, body in await asyncio.gather(*answers) if status == 200}
    assert len(bodies) == 1
    for _ in range(10):  # and later, from memory
        assert (await fetch(buyer, segment.url))[2] in bodies
    assert origin.hits["seg1.ts"] == 1
    async with buyer.http.get("/metrics", headers=API) as response:
        assert "gateway_keys_segments_encrypted_total 1.0" in await response.text()


async def test_instances_sharing_the_store_make_the_same_bytes_and_keys(
        buyer: ViewerClient, settings: Settings, tmp_path: Path, catalog: Path,
        aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
        ) -> None:
    """Two instances on one store, as behind a load balancer: a playlist written by one,
    its segments and keys asked of the other, give one set of bytes (a CDN may keep
    either instance's copy)."""
    other = ViewerClient(await aiohttp_client(create_app(
        keys_settings(settings, tmp_path / "other", catalog))))
    await buy(buyer, "dir")
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    _, _, again = await fetch(other, "/media/dir/index.m3u8")
    assert again == body  # the same URLs, keys and IVs
    for segment in segments_of(body.decode()):
        assert (await fetch(buyer, segment.url))[2] == (await fetch(other, segment.url))[2]
    key_uri = segments_of(body.decode())[0].key_uri
    key = (await fetch(buyer, key_uri))[2]
    assert await fetch_with(other, key_uri, gate_token(buyer, key_uri)) == (200, key)


async def test_keys_and_places_are_answered_from_memory_once_known(
        buyer: ViewerClient) -> None:
    app = buyer.http.app
    assert app is not None
    calls: list[str] = []

    class Counting:  # in front of the real store: counts what reaches it
        async def get(self, stream_id: str, key_id: str) -> bytes | None:
            calls.append("get")
            return await app[STORE].media_keys.get(stream_id, key_id)

        async def create(self, stream_id: str, key_id: str, key: bytes) -> bytes:
            calls.append("create")
            return await app[STORE].media_keys.create(stream_id, key_id, key)

    delivery_of(buyer).keys = StreamKeys(Counting())
    await buy(buyer, "dir")
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    assert calls == ["create", "create"]  # the playlist's two keys, made before it is served
    reports = app[GATE].device_reports
    for segment in segments_of(body.decode()) * 25:
        status, _, _ = await fetch(buyer, segment.key_uri)
        assert status == 200
    assert calls == ["create", "create"]  # no store call for 100 key requests
    assert app[GATE].device_reports == reports + 1  # one place, reported once


async def test_a_key_of_another_stream_is_never_served(
        buyer: ViewerClient, outsider: ViewerClient) -> None:
    access = await buy(buyer, "dir")
    token = access["tokenPlaybackUrl"].split("/")[4]
    await buy(outsider, "http")  # the key exists, for its own viewers
    _, _, body = await fetch(outsider, "/media/http/index.m3u8")
    http_key = segments_of(body.decode())[0].key_uri.rsplit("/", 1)[1]
    for path in (f"/keys/http/t/{token}/{http_key}", f"/keys/http/{http_key}"):
        status, answer = await fetch_with(buyer, path, token)
        assert status == 403 and b"no_access" in answer


@pytest.mark.parametrize("ending", ["revoked", "refunded", "expired"])
async def test_a_viewer_whose_access_ended_gets_no_next_key(
        buyer: ViewerClient, clock: FakeClock, ending: str) -> None:
    access = await buy(buyer, "dir")
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    first, last = segments_of(body.decode())[0], segments_of(body.decode())[-1]
    assert (await fetch(buyer, first.key_uri))[0] == 200
    if ending == "revoked":
        async with buyer.http.post(f"/api/sessions/{access['sessionId']}/revoke",
                                   headers=API, json={"reason": "abuse"}) as response:
            assert response.status == 200
    elif ending == "refunded":  # a refund ends access exactly like a revocation
        app = buyer.http.app
        assert app is not None
        await app[SESSIONS].revoke(access["sessionId"], "refunded")
    else:
        clock.advance(7200)
    status, headers, refused = await fetch(buyer, last.key_uri)
    assert status == 403 and headers["Cache-Control"] == KEY_CACHE_CONTROL
    assert b'"code": "no_access"' in refused
    # The media itself stays public: it is nothing without the key.
    assert (await fetch(buyer, last.url))[0] == 200


async def test_a_device_beyond_the_limit_gets_no_key_and_its_place_is_kept_between_keys(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, catalog: Path,
        clock: FakeClock) -> None:
    """A player asks the service only for each new key: its place stays taken for a
    rotation and the gate's usual 30 s, so a shared cookie cannot slip in between."""
    rotation_s = 60
    buyer = await make_viewer(keys_settings(
        settings, tmp_path, catalog, GATEWAY_MAX_DEVICES="1",
        GATEWAY_KEY_ROTATION_SECONDS=str(rotation_s)))
    await buy(buyer, "dir")
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    key_uri = segments_of(body.decode())[0].key_uri
    here, elsewhere = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "203.0.113.9"}
    assert (await fetch(buyer, key_uri, **here))[0] == 200
    clock.advance(45)  # past the gate's 30 s, inside a rotation and 30 s
    status, _, refused = await fetch(buyer, key_uri, **elsewhere)
    assert status == 403 and b'"code": "device_limit"' in refused
    assert (await fetch(buyer, key_uri, **here))[0] == 200  # the place that plays, plays
    clock.advance(rotation_s + 31)  # it stopped asking: its place is free
    assert (await fetch(buyer, key_uri, **elsewhere))[0] == 200


async def test_watch_here_instead_stops_the_other_device_at_its_next_key(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, catalog: Path) -> None:
    tv = await make_viewer(keys_settings(settings, tmp_path, catalog,
                                         GATEWAY_MAX_DEVICES="1"))
    await buy(tv, "dir")
    _, _, body = await fetch(tv, "/media/dir/index.m3u8")
    key_uri = segments_of(body.decode())[0].key_uri
    assert (await fetch(tv, key_uri))[0] == 200
    on_the_tv = gate_token(tv, key_uri)
    async with tv.http.post("/api/watch-here", json={"streamId": "dir"},
                            headers={"X-Forwarded-For": "203.0.113.9"}) as response:
        assert (await response.json())["data"]["hasAccess"]
    on_the_phone = gate_token(tv, key_uri)
    status, refused = await fetch_with(tv, key_uri, on_the_tv)
    assert status == 403 and b"no_access" in refused
    assert (await fetch_with(tv, key_uri, on_the_phone,
                             **{"X-Forwarded-For": "203.0.113.9"}))[0] == 200


async def test_a_paid_renewal_hands_its_token_over_before_the_seam(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, catalog: Path,
        clock: FakeClock) -> None:
    """A key asked for just after the first window ends carries the cookie the player
    held before it: check-access must have put the renewal's token there already."""
    buyer = await make_viewer(keys_settings(settings, tmp_path, catalog,
                                            GATEWAY_ACCESS_SECONDS="600"))
    first = await buy(buyer, "dir")
    renewal = await buyer.generate_qris("dir")  # the last 10 minutes: a renewal
    await buyer.pay(renewal["trxId"])
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    key_uri = segments_of(body.decode())[-1].key_uri

    clock.advance(600 - 90)  # 90 s left: the first window's own token still
    access = await buyer.check_access("dir")
    assert access["sessionId"] == first["sessionId"]
    assert access["next"]["sessionId"] == renewal["sessionId"]
    first_token = gate_token(buyer, key_uri)
    clock.advance(40)  # 50 s left: the page asks, and gets the renewal's
    access = await buyer.check_access("dir")
    assert access["sessionId"] == first["sessionId"]
    assert gate_token(buyer, key_uri) != first_token

    clock.advance(51)  # the first window is over; nobody asked check-access since
    status, _, _ = await fetch(buyer, key_uri)
    assert status == 200
    # And the first window's token is over with it.
    assert (await fetch_with(buyer, key_uri, first_token))[0] == 403


async def test_ll_hls_directives_are_ignored_and_never_reach_the_origin(
        buyer: ViewerClient, origin: OriginServer) -> None:
    _, _, plain = await fetch(buyer, "/media/http/index.m3u8")
    status, _, directed = await fetch(buyer, "/media/http/index.m3u8?_HLS_msn=3&_HLS_part=1")
    assert status == 200 and directed == plain
    assert all("_HLS_msn" not in query for query in origin.queries)


async def test_the_demo_loop_plays_as_a_live_stream_with_keys(
        buyer: ViewerClient, clock: FakeClock) -> None:
    await buy(buyer, "loop")
    _, _, body = await fetch(buyer, "/media/loop/index.m3u8")
    text = body.decode()
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-MEDIA-SEQUENCE:" in text
    segments = segments_of(text)
    assert len(segments) >= 3
    sources = {path.read_bytes() for path in DEMO_SEGMENTS.glob("seg*.ts")}
    for segment in segments:
        _, _, encrypted = await fetch(buyer, segment.url)
        status, _, key = await fetch(buyer, segment.key_uri)
        assert status == 200
        assert decrypt_segment(encrypted, key, segment.iv) in sources
    clock.advance(ROTATION_S * 3)  # a few rotations later: new keys, still playing
    _, _, later = await fetch(buyer, "/media/loop/index.m3u8")
    assert {s.key_uri for s in segments_of(later.decode())}.isdisjoint(
        {s.key_uri for s in segments})


async def test_an_fmp4_stream_sends_its_init_section_in_the_clear(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, fmp4_dir: Path) -> None:
    catalog = write_catalog(tmp_path / "fmp4.toml", [
        {"id": "fmp4", "title": "fMP4", "price": 1000, "origin": f"file://{fmp4_dir}/"}])
    buyer = await make_viewer(keys_settings(settings, tmp_path, catalog))
    await buy(buyer, "fmp4")
    _, _, body = await fetch(buyer, "/media/fmp4/index.m3u8")
    text = body.decode()
    init_url = re.search(r'#EXT-X-MAP:URI="(/media/fmp4/c/[^"]+)"', text)
    assert init_url is not None
    status, headers, init = await fetch(buyer, init_url.group(1))
    assert status == 200 and init == (fmp4_dir / "init.mp4").read_bytes()
    assert headers["Cache-Control"] == SEGMENT_CACHE_CONTROL
    segment = segments_of(text)[0]
    _, _, encrypted = await fetch(buyer, segment.url)
    key = (await fetch(buyer, segment.key_uri))[2]
    assert decrypt_segment(encrypted, key, segment.iv) == (fmp4_dir / "part0.m4s").read_bytes()


async def test_urls_the_service_did_not_write_are_not_found(buyer: ViewerClient) -> None:
    await buy(buyer, "dir")
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    segment = segments_of(body.decode())[0]
    forged_tag = re.sub(r"/k/([^/]+)/[^/]+/", r"/k/\1/AAAAAAAAAAAAAAAA/", segment.url)
    for path in (forged_tag, "/media/dir/c/AAAAAAAAAAAAAAAA/seg0.ts", "/media/dir/seg0.ts",
                 "/media/dir/../secret.txt", "/media/nope/index.m3u8",
                 segment.key_uri.replace("/dir/", "/dir/x"), "/keys/dir/not-a-key"):
        status, headers, answer = await fetch(buyer, path)
        assert status in (403, 404), path
        assert headers["Cache-Control"] == "private, no-store", path
        assert answer.startswith(b'{"success": false'), path


async def test_segments_answer_byte_ranges(buyer: ViewerClient) -> None:
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    url = segments_of(body.decode())[0].url
    _, _, whole = await fetch(buyer, url)
    status, headers, part = await fetch(buyer, url, Range="bytes=16-31")
    assert status == 206 and part == whole[16:32]
    assert headers["Content-Range"] == f"bytes 16-31/{len(whole)}"


async def test_a_master_playlist_of_fmp4_renditions_plays_with_a_path_token(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path,
        fmp4_stream: Path) -> None:
    """A master playlist keeps its relative variant URIs, so the token in its path
    reaches the variant and from there every key URI: ffmpeg, sending no cookie,
    decodes every frame through the service."""
    catalog = write_catalog(tmp_path / "master.toml", [
        {"id": "show", "title": "Show", "price": 1000, "origin": f"file://{fmp4_stream}/",
         "playlist": "master.m3u8"}])
    buyer = await make_viewer(keys_settings(settings, tmp_path, catalog))
    access = await buy(buyer, "show")
    assert access["playbackUrl"] == "/media/show/master.m3u8"
    _, headers, master = await fetch(buyer, access["tokenPlaybackUrl"])
    assert headers["Cache-Control"] == PLAYLIST_CACHE_CONTROL
    assert "v0/index.m3u8" in master.decode().splitlines()
    url = str(buyer.http.make_url(access["tokenPlaybackUrl"]))
    assert await video_frames(url) == STREAM_SECONDS * VIDEO_FPS
    # Without the token, the same media decodes to nothing: its keys are refused.
    assert await video_frames(str(buyer.http.make_url(access["playbackUrl"]))) == 0


async def test_the_console_counts_a_keys_player_as_playing_between_keys(
        buyer: ViewerClient, clock: FakeClock) -> None:
    """A keys player comes back once a key (a rotation), not once a segment: the
    console's "playing now" counts its place as long as the gate does."""
    from gateway.device_model import PLAYING_WINDOW_MS
    from gateway.keys import REPORTS

    app = buyer.http.app
    assert app is not None
    await buy(buyer, "dir")
    _, _, body = await fetch(buyer, "/media/dir/index.m3u8")
    status, _, _ = await fetch(buyer, segments_of(body.decode())[0].key_uri)
    assert status == 200
    assert (await app[REPORTS].audience_now()).playing == {"dir": 1}
    clock.advance(PLAYING_WINDOW_MS / 1000 + 2)  # past /hls/'s window, within a rotation's
    assert (await app[REPORTS].audience_now()).playing == {"dir": 1}
    clock.advance(ROTATION_S + 1)  # no key for longer than a rotation and its grace
    assert (await app[REPORTS].audience_now()).playing == {}
