"""Who gets through the gate: only a paid, unexpired, unrevoked session's token, for its
own stream, in the cookie or in the path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import GATE
from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    REDIS_URL,
    SECRET,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
    wait_until,
)
from tests.gate.conftest import WINDOW_CASES, buy, ticket_to_revoke, windows_settings


async def status_of(viewer: ViewerClient, path: str) -> int:
    async with viewer.http.get(path) as response:
        await response.read()
        if response.status == 403:
            assert response.headers["Cache-Control"] == "private, no-store"
            assert (await response.json())["code"] == "no_access"
        return response.status


async def test_nothing_leaves_the_gate_before_payment(gate_viewer: ViewerClient) -> None:
    qr = await gate_viewer.generate_qris("dir")
    assert await status_of(gate_viewer, "/hls/dir/index.m3u8") == 403
    assert await status_of(gate_viewer, "/hls/dir/seg0.ts") == 403
    check = await gate_viewer.check_access("dir", qr["sessionId"])
    assert "playbackUrl" not in check and "tokenPlaybackUrl" not in check


async def test_check_access_sets_a_scoped_cookie_and_both_urls(gate_viewer: ViewerClient,
                                                               clock: FakeClock) -> None:
    qr = await gate_viewer.generate_qris("dir")
    await gate_viewer.pay(qr["trxId"])
    clock.advance(100)
    async with gate_viewer.http.get("/api/check-access",
                                    params={"streamId": "dir"}) as response:
        data = (await response.json())["data"]
        cookie = response.cookies["gate"]
    assert cookie["path"] == "/hls/dir/" and cookie["httponly"]
    assert cookie["samesite"] == "Lax" and int(cookie["max-age"]) == 7100
    assert data["playbackUrl"] == "/hls/dir/index.m3u8"
    assert data["tokenPlaybackUrl"].startswith("/hls/dir/t/")
    assert data["tokenPlaybackUrl"].endswith("/index.m3u8")
    assert await status_of(gate_viewer, "/hls/dir/index.m3u8") == 200
    assert await status_of(gate_viewer, "/hls/dir/seg1.ts") == 200


async def test_the_path_token_works_without_cookies(gate_viewer: ViewerClient,
                                                    make_viewer: AppFactory) -> None:
    access = await buy(gate_viewer, "dir")
    cookieless = await make_viewer()
    token_base = access["tokenPlaybackUrl"].rsplit("/", 1)[0]
    assert await status_of(cookieless, access["tokenPlaybackUrl"]) == 200
    # A relative segment URI resolves under the token path: no playlist rewriting.
    assert await status_of(cookieless, f"{token_base}/seg2.ts") == 200
    assert await status_of(cookieless, "/hls/dir/seg2.ts") == 403


async def test_a_token_opens_only_its_own_stream(gate_viewer: ViewerClient) -> None:
    access = await buy(gate_viewer, "dir")
    token = access["tokenPlaybackUrl"].split("/")[4]
    assert await status_of(gate_viewer, f"/hls/loop/t/{token}/index.m3u8") == 403
    assert await status_of(gate_viewer, "/hls/loop/index.m3u8") == 403  # cookie is /hls/dir/


async def test_forged_and_tampered_tokens_are_refused(gate_viewer: ViewerClient) -> None:
    access = await buy(gate_viewer, "dir")
    token = access["tokenPlaybackUrl"].split("/")[4]
    kid, body, signature = token.split(".")
    for forged in (f"{kid}.{body}.{signature[::-1]}", f"{kid}.{body[:-2]}xx.{signature}",
                   f"00000000.{body}.{signature}", "garbage", "a.b.c"):
        assert await status_of(gate_viewer, f"/hls/dir/t/{forged}/index.m3u8") == 403, forged


async def test_expiry_stops_playback_at_the_next_request(gate_viewer: ViewerClient,
                                                         clock: FakeClock) -> None:
    access = await buy(gate_viewer, "dir")
    clock.advance(7200 - 1)
    assert await status_of(gate_viewer, "/hls/dir/seg0.ts") == 200
    assert await status_of(gate_viewer, access["tokenPlaybackUrl"]) == 200
    clock.advance(1)
    assert await status_of(gate_viewer, "/hls/dir/seg0.ts") == 403
    assert await status_of(gate_viewer, access["tokenPlaybackUrl"]) == 403


async def test_revocation_stops_playback_at_the_next_request(gate_viewer: ViewerClient) -> None:
    access = await buy(gate_viewer, "dir")
    assert await status_of(gate_viewer, "/hls/dir/seg0.ts") == 200
    revoked = await gate_viewer.call("POST", f"/api/sessions/{access['sessionId']}/revoke",
                                     json={"reason": "refund"},
                                     headers={"X-Api-Key": API_KEY}, expect=200)
    assert revoked["data"]["status"] == "expired"
    assert await status_of(gate_viewer, "/hls/dir/seg0.ts") == 403
    assert await status_of(gate_viewer, access["tokenPlaybackUrl"]) == 403
    again = await gate_viewer.check_access("dir", access["sessionId"])
    assert not again["hasAccess"]


async def test_only_an_operator_may_revoke(gate_viewer: ViewerClient) -> None:
    access = await buy(gate_viewer, "dir")
    body = await gate_viewer.call("POST", f"/api/sessions/{access['sessionId']}/revoke",
                                  expect=401)
    assert body["code"] == "unauthenticated"
    assert await status_of(gate_viewer, "/hls/dir/seg0.ts") == 200


async def test_a_restarted_gate_still_refuses_revoked_sessions(
        gate_viewer: ViewerClient, gate_settings: Settings, make_viewer: AppFactory,
        aiohttp_client: object, clock: FakeClock) -> None:
    from gateway.app import create_app

    access = await buy(gate_viewer, "dir")
    await gate_viewer.call("POST", f"/api/sessions/{access['sessionId']}/revoke",
                           headers={"X-Api-Key": API_KEY}, expect=200)
    restarted = await aiohttp_client(create_app(gate_settings, clock=clock))  # type: ignore[operator]
    async with restarted.get(access["tokenPlaybackUrl"]) as response:
        assert response.status == 403
    assert restarted.app[GATE].access.is_ended(access["sessionId"])


async def test_rotating_the_secret_does_not_cut_viewers_off(
        tmp_path: Path, gate_viewer: ViewerClient, gate_settings: Settings,
        aiohttp_client: object, clock: FakeClock) -> None:
    from gateway.app import create_app

    access = await buy(gate_viewer, "dir")
    rotated = make_settings(tmp_path, GATEWAY_STREAMS=str(gate_settings.streams_path),
                            GATEWAY_SECRET="r" * 40, GATEWAY_PREVIOUS_SECRETS=SECRET)
    client = await aiohttp_client(create_app(rotated, clock=clock))  # type: ignore[operator]
    async with client.get(access["tokenPlaybackUrl"]) as response:
        assert response.status == 200


async def test_unknown_streams_are_404(gate_viewer: ViewerClient) -> None:
    async with gate_viewer.http.get("/hls/nope/index.m3u8") as response:
        assert response.status == 404
        assert (await response.json())["code"] == "unknown_stream"


async def test_a_cookie_is_judged_by_the_token_in_it_every_time(
        gate_viewer: ViewerClient, make_viewer: AppFactory) -> None:
    access = await buy(gate_viewer, "dir")
    token = access["tokenPlaybackUrl"].split("/")[4]
    kid, body, signature = token.split(".")
    stranger = await make_viewer()
    forged = f"other=1; gate={kid}.{body}.{signature[::-1]}"
    good = f"other=1; gate={token}"
    # The same header twice, as a player sends it: refused both times, then the real
    # token opens it, and the forged header stays refused afterwards.
    for cookie, expected in ((forged, 403), (forged, 403), (good, 200), (good, 200),
                             (forged, 403), ("other=1", 403)):
        async with stranger.http.get("/hls/dir/seg1.ts",
                                     headers={"Cookie": cookie}) as response:
            await response.read()
            assert response.status == expected, cookie


async def test_media_answers_are_finished_like_every_other(gate_viewer: ViewerClient) -> None:
    """The media routes run outside the app's middleware (the hot path): their answers,
    refusals and mistakes included, still carry what every answer carries, and a method
    they do not take is a 405 naming the ones they do."""
    for path in ("/hls/dir/index.m3u8", "/hls/dir/t/forged/index.m3u8", "/hls/dir/..%2Fx.ts"):
        async with gate_viewer.http.get(path) as response:
            assert response.status in (400, 403), path
            assert response.headers["Cache-Control"] == "private, no-store"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "same-origin"
            body = await response.json()
            assert body["success"] is False and body["code"] in ("no_access", "invalid_request")
    access = await buy(gate_viewer, "dir")
    for method in ("GET", "HEAD"):
        async with gate_viewer.http.request(method, access["tokenPlaybackUrl"]) as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert (await response.read()).startswith(b"#EXTM3U") == (method == "GET")
    async with gate_viewer.http.post(access["tokenPlaybackUrl"]) as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
        assert (await response.json())["code"] == "method_not_allowed"


# --- a revoked ticket stops whatever its window (tokens live as model says) -----------

async def plays(viewer: ViewerClient, access: dict[str, Any]) -> tuple[int, int]:
    """The playlist's status in both token forms: the gate cookie, the path token."""
    return (await status_of(viewer, access["playbackUrl"]),
            await status_of(viewer, access["tokenPlaybackUrl"]))


async def revoke(viewer: ViewerClient, session_id: str) -> None:
    await viewer.call("POST", f"/api/sessions/{session_id}/revoke",
                      headers={"X-Api-Key": API_KEY}, expect=200)


Connect = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.mark.parametrize("case", WINDOW_CASES)
async def test_a_revoked_ticket_stops_at_its_next_request_whatever_its_window(
        case: str, tmp_path: Path, ts_dir: Path, aiohttp_client: Connect,
        clock: FakeClock) -> None:
    settings = windows_settings(tmp_path, ts_dir, clock())
    viewer = ViewerClient(await aiohttp_client(create_app(settings, clock=clock)))
    access = await ticket_to_revoke(viewer, clock, case)
    assert await plays(viewer, access) == (200, 200)
    await revoke(viewer, access["sessionId"])
    assert await plays(viewer, access) == (403, 403)
    # And after a restart, which reloads what was ended from the store.
    restarted = ViewerClient(await aiohttp_client(create_app(settings, clock=clock)))
    copy_cookies(viewer, restarted)
    assert await plays(restarted, access) == (403, 403)


@pytest.mark.parametrize("case", WINDOW_CASES)
async def test_a_ticket_revoked_on_one_instance_stops_on_the_other_whatever_its_window(
        case: str, tmp_path: Path, ts_dir: Path, redis_prefix: str,
        aiohttp_client: Connect, clock: FakeClock) -> None:
    async def instance(name: str) -> ViewerClient:
        settings = windows_settings(tmp_path / name, ts_dir, start_ms, GATEWAY_STORE=REDIS_URL,
                                    GATEWAY_REDIS_KEY_PREFIX=redis_prefix)
        return ViewerClient(await aiohttp_client(create_app(settings, clock=clock)))

    start_ms = clock()
    here, there = await instance("a"), await instance("b")
    access = await ticket_to_revoke(here, clock, case)
    assert await plays(here, access) == (200, 200)
    await revoke(there, access["sessionId"])
    app = here.http.app
    assert app is not None
    await wait_until(lambda: app[GATE].access.is_ended(access["sessionId"]), timeout_s=10)
    assert await plays(here, access) == (403, 403)
    # And an instance started afterwards (or restarted) reloads it from the store.
    late = await instance("c")
    copy_cookies(here, late)
    assert await plays(late, access) == (403, 403)


def copy_cookies(source: ViewerClient, target: ViewerClient) -> None:
    """The same browser, talking to another instance (or after a restart)."""
    for cookie in source.http.session.cookie_jar:
        target.http.session.cookie_jar.update_cookies(
            {cookie.key: cookie.value},
            response_url=source.http.make_url(cookie["path"] or "/"))
