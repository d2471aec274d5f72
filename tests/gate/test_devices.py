"""One purchase, not one link for everyone (SPEC, Devices): each device gets its own
grant, and a purchase plays in at most GATEWAY_MAX_DEVICES places at once, counted per
client address. Clients here really connect from distinct loopback addresses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.device_model import REPORT_INTERVAL_MS
from gateway.keys import GATE
from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    REDIS_URL,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
)
from tests.gate.conftest import buy

API = {"X-Api-Key": API_KEY}


@pytest.fixture
def limited_settings(settings: Settings, gate_settings: Settings, tmp_path: Path) -> Settings:
    """The gate's catalog and a limit of 2, on each store backend."""
    return make_settings(tmp_path, GATEWAY_STREAMS=str(gate_settings.streams_path),
                         GATEWAY_MAX_DEVICES="2", GATEWAY_STORE=settings.store_url,
                         GATEWAY_REDIS_KEY_PREFIX=settings.redis_key_prefix)


@pytest.fixture
async def owner(make_viewer: AppFactory, limited_settings: Settings) -> ViewerClient:
    return await make_viewer(limited_settings)


class Place:
    """A player on a machine of its own: every connection comes from `address`."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.http = session

    async def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        async with self.http.get(path, **kwargs) as response:
            body = await response.read()
            if response.status == 403:
                assert response.headers["Cache-Control"] == "private, no-store"
                return 403, await response.json()
            return response.status, None if not body.startswith(b"{") else {}

    async def code(self, path: str, **kwargs: Any) -> int | str:
        """200, or the refusal's machine code."""
        status, body = await self.get(path, **kwargs)
        return body["code"] if status == 403 and body is not None else status


@contextlib.asynccontextmanager
async def place_at(viewer: ViewerClient, address: str) -> AsyncIterator[Place]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(str(viewer.http.make_url("/")), connector=connector,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Place(session)


async def test_a_shared_link_plays_in_two_places_and_the_third_waits_for_a_free_one(
        owner: ViewerClient, clock: FakeClock) -> None:
    link = (await buy(owner, "dir"))["tokenPlaybackUrl"]
    segment = link.rsplit("/", 1)[0] + "/seg1.ts"
    async with place_at(owner, "127.0.0.2") as first, \
            place_at(owner, "127.0.0.3") as second, \
            place_at(owner, "127.0.0.4") as third:
        assert await first.code(link) == 200
        assert await second.code(link) == 200
        assert await third.code(link) == "device_limit"
        assert await third.code(segment) == "device_limit"
        # The two already playing are not disturbed.
        assert await first.code(segment) == 200
        assert await second.code(segment) == 200
        # `second` stops. `first` plays on; 30 s after `second` was last seen, its place
        # is free.
        for _ in range(2):
            clock.advance(10)
            assert await first.code(segment) == 200
            assert await third.code(link) == "device_limit"
        clock.advance(10)
        assert await first.code(segment) == 200
        clock.advance(1)
        assert await third.code(link) == 200
        assert await first.code(segment) == 200
        assert await second.code(link) == "device_limit"  # now it is the one over


async def test_the_gate_asks_the_store_once_per_place_not_per_request(
        owner: ViewerClient, clock: FakeClock) -> None:
    link = (await buy(owner, "dir"))["tokenPlaybackUrl"]
    app = owner.http.app
    assert app is not None
    gate = app[GATE]
    async with place_at(owner, "127.0.0.2") as first, \
            place_at(owner, "127.0.0.3") as second, \
            place_at(owner, "127.0.0.4") as third:
        for place in (first, second, third):
            await place.code(link)
        reports = gate.device_reports
        for _ in range(20):
            assert await first.code(link) == 200
            assert await third.code(link) == "device_limit"
        assert gate.device_reports == reports
        clock.advance(6)  # a few seconds on: each place is reported once more
        for _ in range(5):
            await first.code(link)
            await third.code(link)
        assert gate.device_reports == reports + 2


async def test_a_reload_stays_one_device(owner: ViewerClient) -> None:
    access = await buy(owner, "dir")
    again = await owner.check_access("dir")
    async with owner.http.get("/watch/dir") as page:
        assert page.status == 200
        reloaded = page.cookies["gate"].value
    assert again["tokenPlaybackUrl"] == access["tokenPlaybackUrl"]
    assert access["tokenPlaybackUrl"].split("/")[4] == reloaded
    # Playing after every reload takes one place: a second device still fits.
    for _ in range(3):
        async with owner.http.get("/hls/dir/index.m3u8") as response:
            assert response.status == 200
        await owner.check_access("dir")
    async with place_at(owner, "127.0.0.2") as elsewhere:
        assert await elsewhere.code(access["tokenPlaybackUrl"]) == 200
    grants = await owner.call("GET", f"/api/sessions/{access['sessionId']}/grants",
                              headers=API, expect=200)
    assert [grant["kind"] for grant in grants["data"]["grants"]] == ["browser"]
    assert len(grants["data"]["grants"][0]["places"]) == 2


def _copy_cookies(source: ViewerClient, target: aiohttp.ClientSession) -> None:
    for cookie in source.http.session.cookie_jar:
        target.cookie_jar.update_cookies({cookie.key: cookie.value},
                                         response_url=source.http.make_url("/"))


async def test_two_browsers_of_one_viewer_are_two_places_and_a_third_is_one_too_many(
        owner: ViewerClient) -> None:
    """The viewer's cookie in three browsers on three machines: one browser by the
    SPEC's definition, one grant, but three places: two play, the third does not."""
    access = await buy(owner, "dir")
    async with place_at(owner, "127.0.0.2") as laptop, \
            place_at(owner, "127.0.0.3") as phone, \
            place_at(owner, "127.0.0.4") as friend:
        for browser in (laptop, phone, friend):
            _copy_cookies(owner, browser.http)
        tokens = []
        for browser in (laptop, phone):
            async with browser.http.get("/api/check-access",
                                        params={"streamId": "dir"}) as response:
                assert response.status == 200
                tokens.append((await response.json())["data"]["tokenPlaybackUrl"])
            assert await browser.code("/hls/dir/index.m3u8") == 200
        assert tokens == [access["tokenPlaybackUrl"]] * 2
        assert await friend.code("/hls/dir/index.m3u8") == "device_limit"
        # Asked from a third place, check-access says so too, and sets no cookie.
        async with friend.http.get("/api/check-access",
                                   params={"streamId": "dir"}) as response:
            assert response.status == 403 and "gate" not in response.cookies
            assert (await response.json())["code"] == "device_limit"
        assert await laptop.code("/hls/dir/seg0.ts") == 200


async def program_access(viewer: ViewerClient, user_id: str, device_id: str, *,
                         expect: int = 200) -> dict[str, Any]:
    body = await viewer.call("GET", "/api/check-access", headers=API, expect=expect,
                             params={"streamId": "dir", "userId": user_id,
                                     "deviceId": device_id})
    return body["data"] if body["success"] else body


async def buy_for(viewer: ViewerClient, user_id: str) -> None:
    """A host platform's server buys for its user (API key)."""
    qr = await viewer.call("POST", "/api/generate-qris", headers=API, expect=201,
                           json={"streamId": "dir", "userId": user_id})
    await viewer.call("POST", f"/simulator/pay/{qr['data']['trxId']}", headers=API,
                      expect=200)


async def test_programs_name_their_devices_and_check_access_refuses_only_a_new_one(
        owner: ViewerClient) -> None:
    await buy_for(owner, "alice")
    tv = await program_access(owner, "alice", "living-room-tv")
    assert (await program_access(owner, "alice", "living-room-tv")) == tv  # same grant
    phone = await program_access(owner, "alice", "phone")
    assert phone["tokenPlaybackUrl"] != tv["tokenPlaybackUrl"]
    async with place_at(owner, "127.0.0.2") as at_tv, place_at(owner, "127.0.0.3") as at_phone:
        assert await at_tv.code(tv["tokenPlaybackUrl"]) == 200
        assert await at_phone.code(phone["tokenPlaybackUrl"]) == 200
    refused = await program_access(owner, "alice", "tablet", expect=403)
    assert refused["code"] == "device_limit"
    assert (await program_access(owner, "alice", "phone")) == phone  # playing: never refused
    bad = await owner.call("GET", "/api/check-access", expect=400,
                           params={"streamId": "dir", "deviceId": "mine"})
    assert bad["code"] == "invalid_request"  # a browser is its cookie, it names no device


async def test_watch_here_instead_ends_the_longest_playing_grant(
        owner: ViewerClient, clock: FakeClock) -> None:
    await buy_for(owner, "alice")
    tv = await program_access(owner, "alice", "tv")
    phone = await program_access(owner, "alice", "phone")
    async with place_at(owner, "127.0.0.2") as at_tv, \
            place_at(owner, "127.0.0.3") as at_phone, \
            place_at(owner, "127.0.0.4") as at_tablet:
        assert await at_tv.code(tv["tokenPlaybackUrl"]) == 200
        clock.advance(1)
        assert await at_phone.code(phone["tokenPlaybackUrl"]) == 200
        moved = await owner.call("POST", "/api/watch-here", headers=API, expect=200,
                                 json={"streamId": "dir", "userId": "alice",
                                       "deviceId": "tablet"})
        tablet = moved["data"]
        assert tablet["hasAccess"]
        assert await at_tablet.code(tablet["tokenPlaybackUrl"]) == 200
        assert await at_tv.code(tv["tokenPlaybackUrl"]) == "no_access"  # played longest
        assert await at_phone.code(phone["tokenPlaybackUrl"]) == 200
        # The TV asks again: a new grant, but the places are taken now.
        assert (await program_access(owner, "alice", "tv", expect=403))["code"] == "device_limit"


async def test_watch_here_never_touches_another_viewers_purchase(
        owner: ViewerClient) -> None:
    await buy_for(owner, "alice")
    await buy_for(owner, "bob")
    bobs = [await program_access(owner, "bob", name) for name in ("a", "b")]
    async with place_at(owner, "127.0.0.2") as one, place_at(owner, "127.0.0.3") as two:
        assert await one.code(bobs[0]["tokenPlaybackUrl"]) == 200
        assert await two.code(bobs[1]["tokenPlaybackUrl"]) == 200
        moved = await owner.call("POST", "/api/watch-here", headers=API, expect=200,
                                 json={"streamId": "dir", "userId": "alice"})
        assert moved["data"]["hasAccess"]
        assert await one.code(bobs[0]["tokenPlaybackUrl"]) == 200
        assert await two.code(bobs[1]["tokenPlaybackUrl"]) == 200


async def test_an_operator_ends_one_grant_and_the_others_play_on(
        owner: ViewerClient) -> None:
    await buy_for(owner, "alice")
    tv = await program_access(owner, "alice", "tv")
    phone = await program_access(owner, "alice", "phone")
    async with place_at(owner, "127.0.0.2") as at_tv, place_at(owner, "127.0.0.3") as at_phone:
        await at_tv.code(tv["tokenPlaybackUrl"])
        await at_phone.code(phone["tokenPlaybackUrl"])
        listed = await owner.call("GET", f"/api/sessions/{tv['sessionId']}/grants",
                                  headers=API, expect=200)
        grants = {grant["deviceId"]: grant for grant in listed["data"]["grants"]}
        assert listed["data"]["maxDevices"] == 2
        assert grants["tv"]["playing"] and grants["tv"]["places"][0]["address"] == "127.0.0.2"
        ended = await owner.call("POST", f"/api/grants/{grants['tv']['grantId']}/end",
                                 headers=API, expect=200)
        assert ended["data"]["endedAt"] is not None and not ended["data"]["playing"]
        assert await at_tv.code(tv["tokenPlaybackUrl"]) == "no_access"
        assert await at_phone.code(phone["tokenPlaybackUrl"]) == 200
    missing = await owner.call("POST", "/api/grants/AAAAAAAAAAAAAAAAAAAAAA/end", headers=API,
                               expect=404)
    assert missing["code"] == "grant_not_found"
    assert (await owner.call("POST", f"/api/grants/{grants['phone']['grantId']}/end",
                             expect=401))["code"] == "unauthenticated"  # viewers cannot


async def test_a_forged_forwarded_for_from_an_untrusted_address_changes_nothing(
        owner: ViewerClient) -> None:
    link = (await buy(owner, "dir"))["tokenPlaybackUrl"]
    async with place_at(owner, "127.0.0.2") as first, \
            place_at(owner, "127.0.0.3") as second, \
            place_at(owner, "127.0.0.4") as third:
        # Claiming to be many clients does not take more places...
        for n in range(5):
            assert await first.code(link, headers={"X-Forwarded-For": f"10.0.0.{n}",
                                                   "X-Real-IP": f"10.0.1.{n}"}) == 200
        assert await second.code(link) == 200
        # ...and claiming to be a client that plays does not get in.
        assert await third.code(link, headers={"X-Forwarded-For": "127.0.0.2"}) == \
            "device_limit"
        assert await third.code(link, headers={"X-Real-IP": "127.0.0.3"}) == "device_limit"


async def test_behind_a_trusted_proxy_the_forwarded_client_is_the_place(
        make_viewer: AppFactory, gate_settings: Settings, tmp_path: Path) -> None:
    viewer = await make_viewer(make_settings(
        tmp_path, GATEWAY_STREAMS=str(gate_settings.streams_path), GATEWAY_MAX_DEVICES="2",
        GATEWAY_TRUSTED_PROXIES="127.0.0.5, 127.0.0.6/32"))
    link = (await buy(viewer, "dir"))["tokenPlaybackUrl"]
    async with place_at(viewer, "127.0.0.5") as proxy:
        # The client wrote the leftmost entry itself; the proxy appended the real one.
        assert await proxy.code(link, headers={
            "X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.6"}) == 200
        assert await proxy.code(link, headers={"X-Real-IP": "203.0.113.8"}) == 200
        assert await proxy.code(link, headers={
            "X-Forwarded-For": "203.0.113.9"}) == "device_limit"
        assert await proxy.code(link, headers={
            "X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) == 200


async def test_without_a_limit_nothing_is_counted(make_viewer: AppFactory,
                                                  gate_settings: Settings,
                                                  tmp_path: Path) -> None:
    viewer = await make_viewer(make_settings(
        tmp_path, GATEWAY_STREAMS=str(gate_settings.streams_path), GATEWAY_MAX_DEVICES="0"))
    link = (await buy(viewer, "dir"))["tokenPlaybackUrl"]
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        async with place_at(viewer, address) as place:
            assert await place.code(link) == 200


# --- several instances on one Redis store ----------------------------------------------

async def test_the_count_is_shared_by_instances_on_one_redis(
        aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
        gate_settings: Settings, tmp_path: Path, clock: FakeClock, redis_prefix: str) -> None:
    instances = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, GATEWAY_STORE=REDIS_URL,
                                 GATEWAY_REDIS_KEY_PREFIX=redis_prefix,
                                 GATEWAY_STREAMS=str(gate_settings.streams_path),
                                 GATEWAY_MAX_DEVICES="2")
        instances.append(ViewerClient(await aiohttp_client(create_app(settings, clock=clock))))
    a, b = instances
    link = (await buy(a, "dir"))["tokenPlaybackUrl"]
    async with place_at(a, "127.0.0.2") as first_on_a, \
            place_at(b, "127.0.0.3") as second_on_b, \
            place_at(a, "127.0.0.4") as third_on_a, \
            place_at(b, "127.0.0.4") as third_on_b:
        assert await first_on_a.code(link) == 200
        assert await second_on_b.code(link) == 200
        assert await third_on_a.code(link) == "device_limit"
        assert await third_on_b.code(link) == "device_limit"


async def test_watch_here_on_one_instance_stops_the_device_on_another_within_seconds(
        aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
        gate_settings: Settings, tmp_path: Path, clock: FakeClock, redis_prefix: str) -> None:
    a, b = [ViewerClient(await aiohttp_client(create_app(make_settings(
        tmp_path / name, GATEWAY_STORE=REDIS_URL, GATEWAY_REDIS_KEY_PREFIX=redis_prefix,
        GATEWAY_STREAMS=str(gate_settings.streams_path), GATEWAY_MAX_DEVICES="2"),
        clock=clock))) for name in ("a", "b")]
    await buy_for(a, "alice")
    tv = (await program_access(a, "alice", "tv"))["tokenPlaybackUrl"]
    phone = (await program_access(a, "alice", "phone"))["tokenPlaybackUrl"]
    async with place_at(a, "127.0.0.2") as at_tv, place_at(b, "127.0.0.3") as at_phone:
        assert await at_tv.code(tv) == 200
        clock.advance(1)  # the TV has played longest
        assert await at_phone.code(phone) == 200
        await b.call("POST", "/api/watch-here", headers=API, expect=200,
                     json={"streamId": "dir", "userId": "alice", "deviceId": "tablet"})
        # Instance a learns it at the TV's next report, a few seconds on, not 30 s.
        clock.advance(REPORT_INTERVAL_MS / 1000)
        for _ in range(100):
            if await at_tv.code(tv) == "no_access":
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the ended grant still plays on the other instance")
        assert await at_phone.code(phone) == 200
