"""GET /gate/auth: nginx's subrequest gets the Python gate's own decision, as 204 or 403,
with how long it may reuse it; the store is asked only about a new place of the device
count, never once per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.handlers.edge import DECISION_REUSE_S
from gateway.keys import GATE
from gateway.settings import Settings
from tests.conftest import (
    API_KEY,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
    store_snapshot,
)
from tests.gate.conftest import buy


async def ask(viewer: ViewerClient, uri: str | None, *, cookie: str | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """nginx's subrequest: the original URI, and the viewer's Cookie header as sent."""
    sent = dict(headers or {})
    if uri is not None:
        sent["X-Original-URI"] = uri
    if cookie is not None:
        sent["Cookie"] = f"gate={cookie}"
    # A fresh request without the test client's jar: nginx forwards exactly these.
    async with viewer.http.session.get(viewer.http.make_url("/gate/auth"), headers=sent,
                                       cookies=None) as response:
        body = await response.read()
        return response.status, dict(response.headers), body


def gate_cookie(viewer: ViewerClient, stream_id: str) -> str:
    jar = viewer.http.session.cookie_jar
    return jar.filter_cookies(viewer.http.make_url(f"/hls/{stream_id}/x.ts"))["gate"].value


@pytest.fixture
async def edge_viewer(make_viewer: AppFactory, gate_settings: Settings) -> ViewerClient:
    viewer = await make_viewer(gate_settings)
    viewer.http.session.cookie_jar.clear()
    return viewer


async def test_refused_before_payment_granted_after(edge_viewer: ViewerClient) -> None:
    status, headers, _ = await ask(edge_viewer, "/hls/dir/index.m3u8")
    assert status == 403
    assert headers["X-Gate-Code"] == "no_access"
    assert headers["X-Accel-Expires"] == str(DECISION_REUSE_S)
    assert "Set-Cookie" not in headers  # nothing for nginx to refuse to cache

    access = await buy(edge_viewer, "dir")
    status, headers, body = await ask(edge_viewer, access["tokenPlaybackUrl"])
    assert (status, body) == (204, b"")
    assert headers["X-Accel-Expires"] == str(DECISION_REUSE_S)
    assert "Set-Cookie" not in headers
    cookie = gate_cookie(edge_viewer, "dir")
    status, _, _ = await ask(edge_viewer, "/hls/dir/seg1.ts?x=1", cookie=cookie)
    assert status == 204


async def test_the_same_rules_as_the_python_gate(edge_viewer: ViewerClient,
                                                 clock: FakeClock) -> None:
    access = await buy(edge_viewer, "dir")
    token = access["tokenPlaybackUrl"].split("/")[4]
    cookie = gate_cookie(edge_viewer, "dir")
    refused = [
        f"/hls/http/t/{token}/index.m3u8",  # another stream's token
        f"/hls/nope/t/{token}/index.m3u8",  # a stream not in the catalog
        f"/hls/dir/t/{token}/secret.txt",  # not a media file type
        f"/hls/dir/t/{token}/%2e%2e/outside.ts",  # encoded traversal
        f"/hls/dir/t/{token}/.hidden.ts",
        f"/hls/dir/t/{token[:-2]}xx/index.m3u8",  # a forged signature
        "/api/check-access",  # not a gate URI at all
        None,  # no X-Original-URI
    ]
    for uri in refused:
        status, headers, _ = await ask(edge_viewer, uri)
        assert status == 403, uri  # never a 400 or 404: nginx makes those a 500
        assert headers["X-Gate-Code"] in ("no_access", "unknown_stream",
                                          "invalid_request"), uri
    # The path token wins over the cookie, as at the gate.
    status, _, _ = await ask(edge_viewer, f"/hls/dir/t/{token[:-2]}xx/index.m3u8",
                             cookie=cookie)
    assert status == 403

    await edge_viewer.call("POST", f"/api/sessions/{access['sessionId']}/revoke",
                           headers={"X-Api-Key": API_KEY}, expect=200)
    for uri in (access["tokenPlaybackUrl"], "/hls/dir/index.m3u8"):
        status, headers, _ = await ask(edge_viewer, uri, cookie=cookie)
        assert (status, headers["X-Gate-Code"]) == (403, "no_access")


async def test_a_decision_is_never_reused_past_the_grant(edge_viewer: ViewerClient,
                                                         clock: FakeClock) -> None:
    access = await buy(edge_viewer, "dir")
    clock.advance(7200 - 4.5)  # 4.5 s of access left
    status, headers, _ = await ask(edge_viewer, access["tokenPlaybackUrl"])
    assert status == 204
    assert headers["X-Accel-Expires"] == "3"  # whole seconds, one short of the end
    assert headers["X-Gate-Segment-Max-Age"] == "1"
    clock.advance(3.8)  # 0.7 s left: may be served, but not remembered
    status, headers, _ = await ask(edge_viewer, access["tokenPlaybackUrl"])
    assert (status, headers["X-Accel-Expires"]) == (204, "0")
    clock.advance(1)
    status, _, _ = await ask(edge_viewer, access["tokenPlaybackUrl"])
    assert status == 403


async def test_decisions_touch_the_store_only_for_a_new_place(
        edge_viewer: ViewerClient, gate_settings: Settings) -> None:
    access = await buy(edge_viewer, "dir")
    # The first decision for this grant at this address takes a place in the device
    # count (issue 11), which is shared through the store; later ones are memory only.
    assert (await ask(edge_viewer, access["tokenPlaybackUrl"]))[0] == 204
    before = store_snapshot(gate_settings)
    app = edge_viewer.http.app
    assert app is not None
    granted = app[GATE].granted
    for _ in range(3):
        assert (await ask(edge_viewer, access["tokenPlaybackUrl"]))[0] == 204
        assert (await ask(edge_viewer, "/hls/dir/index.m3u8"))[0] == 403
    assert store_snapshot(gate_settings) == before
    assert app[GATE].granted == granted + 3  # counted as the gate counts


async def test_the_device_limit_applies_behind_nginx(make_viewer: AppFactory,
                                                     gate_settings: Settings,
                                                     tmp_path: Path) -> None:
    """Three viewers of one shared link behind nginx (its address trusted, theirs
    forwarded), a limit of 2: the third is refused, with its code for nginx's page."""
    viewer = await make_viewer(make_settings(
        tmp_path, GATEWAY_STREAMS=str(gate_settings.streams_path), GATEWAY_MAX_DEVICES="2",
        GATEWAY_TRUSTED_PROXIES="127.0.0.1"))
    link = (await buy(viewer, "dir"))["tokenPlaybackUrl"]

    async def decision(client: str) -> tuple[int, str | None]:
        status, headers, _ = await ask(viewer, link, headers={
            "X-Forwarded-For": f"{client}, 127.0.0.1", "X-Real-IP": client})
        return status, headers.get("X-Gate-Code")

    assert await decision("203.0.113.1") == (204, None)
    assert await decision("203.0.113.2") == (204, None)
    assert await decision("203.0.113.3") == (403, "device_limit")
    assert await decision("203.0.113.1") == (204, None)  # the two playing play on


async def test_behind_a_trusted_proxy_the_public_url_decides_the_websocket_origin(
        make_viewer: AppFactory, tmp_path: Path) -> None:
    """A proxy that forgets `Host` must not cut the viewer's live status: with
    GATEWAY_PUBLIC_URL set, the socket's Origin is checked against the public URL."""
    viewer = await make_viewer(make_settings(
        tmp_path, GATEWAY_PUBLIC_URL="http://tonton.example.id",
        GATEWAY_TRUSTED_PROXIES="127.0.0.1"))
    qr = await viewer.generate_qris()
    url = f"/ws?sessionId={qr['sessionId']}"
    async with viewer.http.ws_connect(url, headers={"Origin": "http://tonton.example.id",
                                                    "Host": "127.0.0.1:9"}) as socket:
        assert (await socket.receive_json())["status"] == "pending"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await viewer.http.ws_connect(url, headers={"Origin": "http://127.0.0.1:9"})
    assert refused.value.status == 403
