"""The line (SPEC, "A crowd at the start of a show"; gateway/line.py), through the real
app on both stores: past the provider's pace or an address's share a buyer is queued
(202 with a place and an ETA), never refused; the place is kept when asked again; the
WebSocket tells the place, then pushes the QR when the line makes it; a crowd behind
one address is served, and a flood of identities from one address cannot push another
address's buyer back."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    START_MS,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
)
from tests.gate.conftest import DEMO_SEGMENTS, write_catalog
from tests.nginx_process import edge_in_front

Client = TestClient[web.Request, web.Application]


def lined(settings: Settings, tmp_path: Path, **overrides: str) -> Settings:
    return make_settings(tmp_path, GATEWAY_STORE=settings.store_url,
                         GATEWAY_REDIS_KEY_PREFIX=settings.redis_key_prefix,
                         GATEWAY_TRUSTED_PROXIES="127.0.0.1", **overrides)


async def ask_for(http: Client, user_id: str, address: str = "10.6.6.6"
                  ) -> tuple[int, dict[str, Any]]:
    """A QR for `user_id` asked by a server (API key) on behalf of a viewer at
    `address` (a trusted proxy forwards it): many identities, one address."""
    async with http.post("/api/generate-qris", json={"streamId": "demo", "userId": user_id},
                         headers={"X-Api-Key": API_KEY, "X-Forwarded-For": address}
                         ) as response:
        return response.status, await response.json()


async def flood(http: Client, count: int, address: str = "10.6.6.6",
                prefix: str = "bot") -> list[tuple[int, dict[str, Any]]]:
    answers: list[tuple[int, dict[str, Any]]] = []
    for start in range(0, count, 100):
        answers += await asyncio.gather(*(ask_for(http, f"{prefix}{n}", address)
                                          for n in range(start, min(count, start + 100))))
    return answers


async def qr_while_time_passes(socket: Any, clock: FakeClock, step_ms: int = 100
                               ) -> dict[str, Any]:
    """The socket's "qr" message, moving the app's clock on a step at a time until the
    line's drain (which paces by that clock) gets to the viewer."""
    for _ in range(600):
        try:
            message: dict[str, Any] = await socket.receive_json(timeout=0.5)
        except TimeoutError:
            clock.advance(step_ms / 1000)
            continue
        if message["type"] == "qr":
            return message
        assert message["type"] == "queue"
    raise AssertionError("no QR came")


async def ask_as(viewer: ViewerClient, address: str) -> tuple[int, dict[str, Any]]:
    async with viewer.http.post("/api/generate-qris", json={"streamId": "demo"},
                                headers={"X-Forwarded-For": address}) as response:
        return response.status, (await response.json())["data"]


async def test_a_crowd_behind_one_address_all_get_a_qr_or_a_place(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    """2,000 distinct viewers behind one carrier NAT within a minute: none refused."""
    viewer = await make_viewer(lined(settings, tmp_path))  # the default share: 120/min
    answers = await flood(viewer.http, 2000, prefix="phone")
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {201, 202}, statuses
    assert statuses[201] == 120
    places = [body["data"] for status, body in answers if status == 202]
    assert all(place["queued"] and place["position"] >= 1 and place["etaSeconds"] >= 0
               for place in places)


async def test_a_flood_from_one_address_does_not_push_another_address_back(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, clock: FakeClock) -> None:
    """A capped provider: everyone waits in one line, fair by address."""
    app_settings = lined(settings, tmp_path, GATEWAY_PROVIDER_RATE_PER_MINUTE="600")
    viewer = await make_viewer(app_settings)
    answers = await flood(viewer.http, 2000)
    assert {status for status, _ in answers} <= {201, 202}
    assert max(body["data"]["position"] for status, body in answers if status == 202) > 1500
    buyer = await make_viewer()
    status, place = await ask_as(buyer, "10.0.0.2")
    # Behind at most one entry of the flooding address, and about to be served.
    assert status == 202 and place["position"] <= 2 and place["etaSeconds"] <= 1
    async with buyer.http.ws_connect("/ws?streamId=demo") as socket:
        assert (await socket.receive_json(timeout=5))["type"] == "queue"
        message = await qr_while_time_passes(socket, clock)
    assert message["streamId"] == "demo" and message["qrCode"].endswith(".png")
    assert clock() - START_MS <= 1000  # served within the second the ETA said


async def test_without_a_provider_cap_another_address_is_served_at_once(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    viewer = await make_viewer(lined(settings, tmp_path, GATEWAY_QR_RATE_PER_ADDRESS="5"))
    answers = await flood(viewer.http, 300)
    assert Counter(status for status, _ in answers) == {201: 5, 202: 295}
    status, qr = await ask_as(await make_viewer(), "10.0.0.2")
    assert status == 201 and qr["status"] == "pending"


async def test_a_queued_buyer_hears_the_place_then_gets_the_qr_over_the_websocket(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, clock: FakeClock) -> None:
    first = await make_viewer(lined(settings, tmp_path, GATEWAY_PROVIDER_RATE_PER_MINUTE="60"))
    assert (await ask_as(first, "10.0.0.1"))[0] == 201  # this second's provider call
    second = await make_viewer()
    status, place = await ask_as(second, "10.0.0.2")
    assert status == 202
    assert place == {"queued": True, "streamId": "demo", "position": 1, "etaSeconds": 1,
                     "etaAtLeast": False}
    async with second.http.ws_connect("/ws?streamId=demo") as socket:
        told = await socket.receive_json(timeout=5)
        assert told == {**place, "type": "queue"}
        message = await qr_while_time_passes(socket, clock)
    assert message["type"] == "qr" and message["status"] == "pending"
    # By the ETA (1 s): the pace's next moment, 1,010 ms after the first call's, which
    # a quiet bucket let start up to CATCH_UP_MS (300) early.
    assert 700 <= clock() - START_MS <= 1200
    # The QR is the viewer's one pending session: asking again shows it (rule 2).
    again = await second.generate_qris(expect=200)
    assert again["sessionId"] == message["sessionId"]
    assert again["qrString"] == message["qrString"]
    async with second.http.ws_connect(f"/ws?sessionId={again['sessionId']}") as socket:
        assert (await socket.receive_json(timeout=5))["status"] == "pending"


async def test_a_place_behind_others_of_ones_own_address_says_its_wait_is_the_least(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    """Fairness by address moves a deep place back as other addresses' buyers come:
    such a place's ETA is said as the least wait, and a place nobody can overtake any
    more as an estimate."""
    first = await make_viewer(lined(settings, tmp_path, GATEWAY_PROVIDER_RATE_PER_MINUTE="1"))
    assert (await ask_as(first, "10.0.0.1"))[0] == 201
    behind_nat = [await make_viewer() for _ in range(3)]
    places = [(await ask_as(viewer, "100.64.0.1"))[1] for viewer in behind_nat]
    assert [(place["position"], place["etaAtLeast"]) for place in places] == [
        (1, False), (2, True), (3, True)]
    status, place = await ask_as(await make_viewer(), "10.0.0.2")
    assert (status, place["position"], place["etaAtLeast"]) == (202, 2, False)
    # That later buyer went ahead of the NAT's second, as its answer allowed.
    status, again = await ask_as(behind_nat[1], "100.64.0.1")
    assert (status, again["position"], again["etaAtLeast"]) == (202, 3, True)
    assert again["etaSeconds"] > places[1]["etaSeconds"]


async def test_asking_again_keeps_the_place_and_is_never_refused(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    first = await make_viewer(lined(settings, tmp_path, GATEWAY_PROVIDER_RATE_PER_MINUTE="1",
                                    GATEWAY_QR_RATE_PER_VIEWER="2"))
    assert (await ask_as(first, "10.0.0.1"))[0] == 201
    second, third = await make_viewer(), await make_viewer()
    assert (await ask_as(second, "10.0.0.2"))[1]["position"] == 1
    assert (await ask_as(third, "10.0.0.3"))[1]["position"] == 2
    for _ in range(15):  # past the viewer's own limit: still the place, never a 429
        status, place = await ask_as(third, "10.0.0.3")
        assert (status, place["position"]) == (202, 2)
    assert place["etaSeconds"] > 60  # one a minute: the second in line waits over one


async def test_a_socket_for_a_place_nobody_holds_is_closed(
        make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    async with viewer.http.ws_connect("/ws?streamId=demo") as socket:
        message = await socket.receive_json(timeout=5)
        assert message["type"] == "error" and message["code"] == "session_not_found"
        await socket.receive(timeout=5)
    assert socket.close_code == 4404


async def test_behind_nginx_an_address_is_its_client_whatever_it_forwards(
        tmp_path: Path, aiohttp_server: Any) -> None:
    """Through the real nginx of `gateway nginx-config`, the service trusting it: a
    client minting identities and forging X-Forwarded-For stays in one lane, so a buyer
    from another address is next but one, not behind the whole flood."""
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "demo", "title": "Demo", "price": 1000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True}])
    edge = await edge_in_front(tmp_path, aiohttp_server, catalog,
                               GATEWAY_PROVIDER_RATE_PER_MINUTE="60")
    try:
        async def ask(source: str, forged: str | None = None) -> tuple[int, dict[str, Any]]:
            # Each client from its own loopback address, as nginx sees it.
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            async with aiohttp.ClientSession(connector=connector) as client, client.post(
                    f"{edge.url}/api/generate-qris", json={"streamId": "demo"},
                    headers={"X-Forwarded-For": forged} if forged else {}) as response:
                return response.status, (await response.json())["data"]

        flood = [await ask("127.0.0.2", f"10.0.{n // 250}.{n % 250 + 1}") for n in range(100)]
        assert flood[0][0] == 201 and {status for status, _ in flood[1:]} == {202}
        status, place = await ask("127.0.0.3")
        assert status == 202 and place["position"] <= 2
    finally:
        edge.stop()


async def test_a_show_cancelled_while_buyers_wait_sells_them_nothing(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path, clock: FakeClock) -> None:
    """A line can outlast a show: each buyer's turn checks the stream again, and their
    page hears at once that the place is gone (asking again says why)."""
    first = await make_viewer(lined(settings, tmp_path, GATEWAY_PROVIDER_RATE_PER_MINUTE="60"))
    assert (await ask_as(first, "10.0.0.1"))[0] == 201
    second = await make_viewer()
    assert (await ask_as(second, "10.0.0.2"))[0] == 202
    async with second.http.ws_connect("/ws?streamId=demo") as socket:
        assert (await socket.receive_json(timeout=5))["type"] == "queue"
        await first.call("POST", "/api/streams/demo/cancel", headers={"X-Api-Key": API_KEY},
                         json={"reason": "the band is ill"}, expect=202)
        for _ in range(100):
            try:
                message = await socket.receive_json(timeout=0.5)
            except TimeoutError:
                clock.advance(0.1)  # the line's turn comes by the app's clock
                continue
            if message.get("gone"):
                break
            assert message["type"] == "queue", message
        else:
            raise AssertionError("the waiting page was never told")
    async with second.http.post("/api/generate-qris", json={"streamId": "demo"},
                                headers={"X-Forwarded-For": "10.0.0.2"}) as response:
        assert response.status >= 400
        assert (await response.json())["code"] == "stream_cancelled"
    assert (await second.check_access())["sessionId"] is None  # no QR was ever made
