"""Who the viewer is: we decide it, never the browser. One viewer never sees, checks,
pays for or polls another viewer's session."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.settings import Settings
from tests.conftest import API_KEY, SECRET, AppFactory, ViewerClient, make_settings

PLATFORM_SECRET = "p" * 40


async def test_first_contact_issues_a_signed_httponly_lax_cookie(viewer: ViewerClient) -> None:
    async with viewer.http.get("/api/user-sessions") as response:
        cookie = response.cookies["viewer"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain http://localhost must work
        assert int(cookie["max-age"]) > 30 * 86400
    async with viewer.http.get("/api/user-sessions") as response:
        assert "viewer" not in response.cookies  # known viewer: not reissued


async def test_cookie_is_secure_behind_https(tmp_path: Path, make_viewer: AppFactory) -> None:
    viewer = await make_viewer(make_settings(tmp_path,
                                             GATEWAY_PUBLIC_URL="https://tonton.example"))
    async with viewer.http.get("/api/user-sessions") as response:
        assert response.cookies["viewer"]["secure"]


async def test_a_tampered_cookie_is_a_stranger(viewer: ViewerClient,
                                               make_viewer: AppFactory) -> None:
    qr = await viewer.generate_qris()
    cookie = viewer.http.session.cookie_jar.filter_cookies(viewer.http.make_url("/"))["viewer"]
    kid, body, signature = cookie.value.split(".")
    forger = await make_viewer()
    forged = f"{kid}.{body}.{signature[:-2]}AA"
    body = await forger.call("GET", "/api/payment-callback", expect=403,
                             params={"sessionId": qr["sessionId"]},
                             headers={"Cookie": f"viewer={forged}"})
    assert body["code"] == "forbidden"


OTHER_USER = "someone-else"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "userId": OTHER_USER}}),
        ("GET", "/api/check-access", {"params": {"streamId": "demo", "userId": OTHER_USER}}),
        ("GET", "/api/user-sessions", {"params": {"userId": OTHER_USER}}),
        ("POST", "/api/user-sessions", {"json": {"streamId": "demo", "userId": OTHER_USER}}),
    ],
)
async def test_a_user_id_that_is_not_the_callers_is_403(
        viewer: ViewerClient, method: str, path: str, kwargs: dict[str, Any]) -> None:
    body = await viewer.call(method, path, expect=403, **kwargs)
    assert body["code"] == "forbidden"


async def test_naming_yourself_is_fine(viewer: ViewerClient) -> None:
    await viewer.generate_qris()
    listing = await viewer.call("GET", "/api/user-sessions", expect=200)
    own = listing["data"]["activeSessions"][0]
    me = await viewer.call("GET", "/api/user-sessions", expect=200,
                           params={"userId": _user_id_of(viewer)})
    assert me["data"]["activeSessions"][0] == own


def _user_id_of(viewer: ViewerClient) -> str:
    import base64

    cookie = viewer.http.session.cookie_jar.filter_cookies(viewer.http.make_url("/"))["viewer"]
    body = cookie.value.split(".")[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().split("|")[0]


async def test_another_viewer_cannot_touch_my_session(viewer: ViewerClient,
                                                      other_viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    sid, trx = qr["sessionId"], qr["trxId"]
    for method, path, kwargs in [
        ("GET", "/api/payment-callback", {"params": {"sessionId": sid}}),
        ("GET", "/api/payment-callback", {"params": {"trxId": trx}}),
        ("GET", "/api/check-access", {"params": {"sessionId": sid, "streamId": "demo"}}),
        ("GET", f"/api/qr/{sid}.png", {}),
        ("POST", f"/simulator/pay/{trx}", {}),
    ]:
        body = await other_viewer.call(method, path, expect=403, **kwargs)
        assert body["code"] == "forbidden", path
    listing = await other_viewer.call("GET", "/api/user-sessions", expect=200)
    assert listing["data"] == {"activeSessions": [], "totalActive": 0}
    assert (await viewer.status(sid))["status"] == "pending"  # nobody paid it


async def test_api_key_acts_for_any_user(viewer: ViewerClient) -> None:
    headers = {"X-Api-Key": API_KEY}
    created = await viewer.call("POST", "/api/generate-qris", expect=201, headers=headers,
                                json={"streamId": "demo", "userId": "platform-user-7"})
    sid = created["data"]["sessionId"]
    status = await viewer.call("GET", "/api/payment-callback", expect=200, headers=headers,
                               params={"sessionId": sid})
    assert status["data"]["status"] == "pending"
    listing = await viewer.call("GET", "/api/user-sessions", expect=200, headers=headers,
                                params={"userId": "platform-user-7"})
    assert listing["data"]["totalActive"] == 1
    needs_user = await viewer.call("POST", "/api/generate-qris", expect=400, headers=headers,
                                   json={"streamId": "demo"})
    assert "userId" in needs_user["error"]
    wrong = await viewer.call("GET", "/api/user-sessions", expect=401,
                              headers={"X-Api-Key": "not-the-key-0123456789abc"})
    assert wrong["code"] == "unauthenticated"


def platform_token(sub: str, *, expires_in_s: int = 600, key: str = PLATFORM_SECRET) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + expires_in_s}, key,
                      algorithm="HS256")


@pytest.fixture
def platform_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, GATEWAY_PLATFORM_JWT_SECRET=PLATFORM_SECRET)


async def test_a_platform_bearer_token_names_the_viewer(make_viewer: AppFactory,
                                                        platform_settings: Settings) -> None:
    viewer = await make_viewer(platform_settings)
    bearer = {"Authorization": f"Bearer {platform_token('member-42')}"}
    created = await viewer.call("POST", "/api/generate-qris", expect=201, headers=bearer,
                                json={"streamId": "demo", "userId": "member-42"})
    phone = await make_viewer()  # another device of the same member, no cookie
    again = await phone.call("POST", "/api/generate-qris", expect=200, headers=bearer,
                             json={"streamId": "demo"})
    assert again["data"]["sessionId"] == created["data"]["sessionId"]
    other = await phone.call("GET", "/api/user-sessions", expect=403, headers=bearer,
                             params={"userId": "member-43"})
    assert other["code"] == "forbidden"


@pytest.mark.parametrize("token", [
    platform_token("member-42", expires_in_s=-120),
    platform_token("member-42", key="q" * 40),
    jwt.encode({"sub": "member-42"}, PLATFORM_SECRET, algorithm="HS256"),  # no exp
    "not.a.jwt",
])
async def test_a_bad_bearer_token_is_401(make_viewer: AppFactory, platform_settings: Settings,
                                         token: str) -> None:
    viewer = await make_viewer(platform_settings)
    body = await viewer.call("GET", "/api/user-sessions", expect=401,
                             headers={"Authorization": f"Bearer {token}"})
    assert body["code"] == "unauthenticated"


async def test_rotating_the_secret_keeps_viewers(settings: Settings, make_viewer: AppFactory,
                                                 aiohttp_client: Any) -> None:
    from gateway.app import create_app

    old = await make_viewer()
    qr = await old.generate_qris()
    cookie = old.http.session.cookie_jar.filter_cookies(old.http.make_url("/"))["viewer"].value
    # The same store, restarted with a new secret and the old one kept for verifying.
    rotated = replace(settings, secret=b"n" * 40, previous_secrets=(SECRET.encode(),))
    client = await aiohttp_client(create_app(rotated))
    async with client.get("/api/payment-callback", params={"sessionId": qr["sessionId"]},
                          headers={"Cookie": f"viewer={cookie}"}) as response:
        assert response.status == 200
