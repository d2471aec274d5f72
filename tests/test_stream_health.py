"""Whether each stream is live, as viewers and buyers see it: the service polls every
origin itself, tolerates blips under a minute, and refuses to sell an offline stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import STREAM_HEALTH
from gateway.settings import PACKAGE_DIR, Settings
from tests.conftest import START_MS, FakeClock, ViewerClient, make_settings, store_snapshot
from tests.gate.conftest import OriginServer, write_catalog

DEMO_SEGMENTS = PACKAGE_DIR / "demo" / "live"
HOUR_MS = 3600 * 1000


def live_playlist(first: int, count: int = 3) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2",
             f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for number in range(first, first + count):
        lines += ["#EXTINF:2.000,", f"seg{number % 4}.ts"]
    return "\n".join(lines) + "\n"


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[OriginServer]:
    root = tmp_path / "origin"
    root.mkdir()
    (root / "index.m3u8").write_text(live_playlist(0))
    server = OriginServer(root)
    await server.server.start_server()
    yield server
    await server.server.close()


def rfc3339(ms: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.fixture
def health_settings(tmp_path: Path, origin: OriginServer) -> Settings:
    (tmp_path / "poster.png").write_bytes(b"\x89PNG\r\n\x1a\nposter")
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "http", "title": "HTTP", "price": 2000, "origin": origin.url()},
        {"id": "loop", "title": "Loop", "price": 3000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True, "poster": "poster.png", "description": "Pola uji",
         "access_seconds": 600},
        {"id": "later", "title": "Later", "price": 4000, "origin": origin.url("none/"),
         "starts_at": rfc3339(START_MS + HOUR_MS), "ends_at": rfc3339(START_MS + 3 * HOUR_MS),
         "poster": "https://images.example.id/later.jpg"},
        {"id": "over", "title": "Over", "price": 5000, "origin": origin.url(),
         "starts_at": rfc3339(START_MS - 3 * HOUR_MS), "ends_at": rfc3339(START_MS - HOUR_MS)},
    ])
    # The poller's own rounds are far apart: the test runs the checks it wants.
    return make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                         GATEWAY_STREAM_CHECK_INTERVAL_SECONDS="300",
                         GATEWAY_UPSTREAM_TIMEOUT_SECONDS="1")


@pytest.fixture
async def app_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    health_settings: Settings, clock: FakeClock,
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(health_settings, clock=clock))


async def statuses(client: TestClient[web.Request, web.Application]) -> dict[str, str]:
    async with client.get("/api/streams") as response:
        body = await response.json()
    return {stream["id"]: stream["status"] for stream in body["data"]["streams"]}


async def test_streams_list_their_status_and_event_fields(
        app_client: TestClient[web.Request, web.Application]) -> None:
    async with app_client.get("/api/streams") as response:
        assert response.status == 200
        streams = {s["id"]: s for s in (await response.json())["data"]["streams"]}
    assert {k: v["status"] for k, v in streams.items()} == {
        "http": "live", "loop": "live", "later": "scheduled", "over": "ended"}
    later = streams["later"]
    assert (later["startsAt"], later["endsAt"]) == (START_MS + HOUR_MS, START_MS + 3 * HOUR_MS)
    assert later["poster"] == "https://images.example.id/later.jpg"
    assert later["accessSeconds"] == 7200
    loop = streams["loop"]
    assert (loop["description"], loop["accessSeconds"], loop["startsAt"]) == (
        "Pola uji", 600, None)
    assert "origin" not in loop and "origin" not in later
    async with app_client.get(loop["poster"]) as poster:
        assert poster.status == 200
        assert poster.content_type == "image/png"
        assert await poster.read() == b"\x89PNG\r\n\x1a\nposter"
    async with app_client.get("/posters/http") as missing:
        assert missing.status == 404
    # Pages may show the remote poster, and nothing else from that host.
    async with app_client.get("/", headers={"Accept": "text/html"}) as page:
        csp = page.headers["Content-Security-Policy"]
        assert "img-src 'self' data: https://images.example.id;" in csp
        assert "later.jpg" in await page.text()


async def test_a_blip_under_a_minute_stays_live_a_longer_outage_cannot_be_sold(
        app_client: TestClient[web.Request, web.Application], origin: OriginServer,
        clock: FakeClock, health_settings: Settings) -> None:
    health = app_client.app[STREAM_HEALTH]
    buyer = ViewerClient(app_client)
    await health.check("http")
    assert health.snapshot()["http"].last_check_ok

    origin.behaviour["index.m3u8"] = "fail"
    clock.advance(2)
    await health.check("http")
    clock.advance(55)
    await health.check("http")
    state = health.snapshot()["http"]
    assert not state.last_check_ok and state.up  # 57 s without a good playlist: a blip
    assert (await statuses(app_client))["http"] == "live"

    clock.advance(5)
    await health.check("http")
    assert (await statuses(app_client))["http"] == "offline"
    before = store_snapshot(health_settings)
    refused = await buyer.generate_qris("http", expect=409)
    assert refused["code"] == "stream_offline"
    assert refused["error"].startswith("Siaran ini sedang tidak tayang")
    assert store_snapshot(health_settings) == before

    # The origin comes back: one good check and it is live and for sale again.
    del origin.behaviour["index.m3u8"]
    (origin.root / "index.m3u8").write_text(live_playlist(7))
    await health.check("http")
    assert (await statuses(app_client))["http"] == "live"
    await buyer.generate_qris("http", expect=201)


async def test_a_playlist_that_stops_moving_counts_as_down(
        app_client: TestClient[web.Request, web.Application], origin: OriginServer,
        clock: FakeClock) -> None:
    health = app_client.app[STREAM_HEALTH]
    await health.check("http")
    clock.advance(4)
    (origin.root / "index.m3u8").write_text(live_playlist(2))
    await health.check("http")
    assert health.snapshot()["http"].newest_segment_age_ms == 0
    for _ in range(13):  # the packager died: the same playlist, every 5 s, for 65 s
        clock.advance(5)
        await health.check("http")
    state = health.snapshot()["http"]
    assert not state.last_check_ok and "unchanged" in (state.problem or "")
    assert (await statuses(app_client))["http"] == "offline"


async def test_scheduled_streams_sell_ended_ones_do_not(
        app_client: TestClient[web.Request, web.Application], clock: FakeClock) -> None:
    buyer = ViewerClient(app_client)
    clock.advance(120)  # the "later" origin has never answered: offline, but not started
    await app_client.app[STREAM_HEALTH].check_all()
    assert (await statuses(app_client))["later"] == "scheduled"
    await buyer.generate_qris("later", expect=201)
    refused = await buyer.call("POST", "/api/generate-qris", expect=409,
                               json={"streamId": "over"}, headers={"Accept-Language": "en"})
    assert refused["code"] == "stream_offline"
    assert refused["error"].startswith("This stream is off the air")


def test_the_status_follows_the_catalog_times_before_the_origin() -> None:
    from gateway.catalog import Stream
    from gateway.stream_health import OriginHealth, StreamStatus, stream_status

    up = OriginHealth(True, True, 0, 0, 0, None)
    down = OriginHealth(False, False, 0, None, None, "HTTP 503")
    event = Stream("e", "E", 1000, "http://o.example/", None, starts_at_ms=1000,
                   ends_at_ms=2000)
    assert stream_status(event, down, 999) is StreamStatus.SCHEDULED
    assert stream_status(event, up, 1000) is StreamStatus.LIVE
    assert stream_status(event, down, 1500) is StreamStatus.OFFLINE
    assert stream_status(event, up, 2000) is StreamStatus.ENDED


async def test_an_origin_down_at_start_up_is_never_sold(
        aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
        health_settings: Settings, origin: OriginServer, clock: FakeClock) -> None:
    """Not even in the first minute after a start or restart: the first check runs
    before the first request, and a stream never seen answering is not for sale."""
    origin.behaviour["index.m3u8"] = "fail"
    client = await aiohttp_client(create_app(health_settings, clock=clock))
    assert (await statuses(client))["http"] == "offline"
    refused = await ViewerClient(client).generate_qris("http", expect=409)
    assert refused["code"] == "stream_offline"
    state = client.app[STREAM_HEALTH].snapshot()["http"]
    assert (state.up, state.reason) == (False, "http_503")


async def test_the_console_words_a_failed_check_and_never_calls_it_up(
        app_client: TestClient[web.Request, web.Application], origin: OriginServer,
        clock: FakeClock) -> None:
    from tests.handlers.test_admin import Console, signed_in

    health = app_client.app[STREAM_HEALTH]
    console = await signed_in(Console(ViewerClient(app_client)))
    row = _health_cell(await console.get("/admin"), "http")
    assert "Aktif" in row and "Bermasalah" not in row
    origin.behaviour["index.m3u8"] = "fail"
    clock.advance(2)
    await health.check("http")  # failed, but within the blip tolerance: still on sale
    row = _health_cell(await console.get("/admin"), "http")
    assert "Bermasalah" in row and "origin menjawab HTTP 503" in row and "Aktif" not in row
    assert "ValueError" not in row
    clock.advance(60)
    await health.check("http")
    row = _health_cell(await console.get("/admin"), "http")
    assert "Mati" in row and "origin menjawab HTTP 503" in row


def _health_cell(page: str, stream_id: str) -> str:
    row = page.split(f'<tr data-stream="{stream_id}">', 1)[1].split("</tr>", 1)[0]
    return row.split('class="health"', 1)[1]
