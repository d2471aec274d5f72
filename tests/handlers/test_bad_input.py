"""Bad input, to every endpoint: a clear 4xx in the SPEC's JSON form, never a 500 or a
traceback, and the store exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings import Settings
from tests.conftest import ViewerClient, store_snapshot

HUGE = "a" * 100_000
VALID_BUT_UNKNOWN_SESSION = "A" * 22

# (method, path, request kwargs, expected status). "{sid}"/"{trx}" are the viewer's own.
CASES: list[tuple[str, str, dict[str, Any], int]] = [
    # POST /api/generate-qris
    ("POST", "/api/generate-qris", {"data": b"{"}, 400),
    ("POST", "/api/generate-qris", {"data": b""}, 400),
    ("POST", "/api/generate-qris", {"data": b"\xff\xfe"}, 400),
    ("POST", "/api/generate-qris", {"json": []}, 400),
    ("POST", "/api/generate-qris", {"json": None}, 400),
    ("POST", "/api/generate-qris", {"json": "demo"}, 400),
    ("POST", "/api/generate-qris", {"json": {}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": 5}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": None}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "nope"}}, 404),
    ("POST", "/api/generate-qris", {"json": {"streamId": "DEMO"}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "../demo"}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo\u0000"}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "a" * 5000}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": "1000"}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": 1000.0}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": 999.5}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": True}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": -1000}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": 0}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": 10**40}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "amount": 1001}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "userId": ""}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "userId": "a b"}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "userId": 7}}, 400),
    ("POST", "/api/generate-qris", {"json": {"streamId": "demo", "pad": HUGE}}, 413),
    # GET /api/payment-callback (status poll)
    ("GET", "/api/payment-callback", {}, 400),
    ("GET", "/api/payment-callback", {"params": {"sessionId": ""}}, 400),
    ("GET", "/api/payment-callback", {"params": {"sessionId": "short"}}, 400),
    ("GET", "/api/payment-callback", {"params": {"sessionId": "A" * 5000}}, 400),
    ("GET", "/api/payment-callback", {"params": {"sessionId": "../../etc/passwd"}}, 400),
    ("GET", "/api/payment-callback", {"params": [("sessionId", "{sid}"),
                                                 ("sessionId", "{sid}")]}, 400),
    ("GET", "/api/payment-callback", {"params": {"trxId": "a b"}}, 400),
    ("GET", "/api/payment-callback", {"params": {"sessionId": VALID_BUT_UNKNOWN_SESSION}}, 404),
    ("GET", "/api/payment-callback", {"params": {"trxId": "NOSUCHTRX"}}, 404),
    # POST /api/payment-callback (unsigned: authentication comes first)
    ("POST", "/api/payment-callback", {"data": b"{"}, 401),
    ("POST", "/api/payment-callback", {"json": {"trxId": "{trx}", "amount": 1000,
                                                "status": "paid", "eventId": "e"}}, 401),
    ("POST", "/api/payment-callback", {"data": HUGE.encode()}, 413),
    # GET /api/check-access
    ("GET", "/api/check-access", {}, 400),
    ("GET", "/api/check-access", {"params": {"streamId": "nope"}}, 404),
    ("GET", "/api/check-access", {"params": {"streamId": "demo", "sessionId": "x"}}, 400),
    ("GET", "/api/check-access", {"params": {"streamId": "demo",
                                             "sessionId": VALID_BUT_UNKNOWN_SESSION}}, 404),
    ("GET", "/api/check-access", {"params": {"streamId": HUGE[:3000]}}, 400),
    # (a browser is its cookie: it names no device)
    ("GET", "/api/check-access", {"params": {"streamId": "demo", "deviceId": "tv"}}, 400),
    ("GET", "/api/check-access", {"params": {"streamId": "demo", "deviceId": "a b"}}, 400),
    # POST /api/watch-here
    ("POST", "/api/watch-here", {"data": b"{"}, 400),
    ("POST", "/api/watch-here", {"json": {}}, 400),
    ("POST", "/api/watch-here", {"json": {"streamId": "nope"}}, 404),
    ("POST", "/api/watch-here", {"json": {"streamId": "demo", "deviceId": "tv"}}, 400),
    ("POST", "/api/watch-here", {"json": {"streamId": "demo", "deviceId": 5}}, 400),
    ("POST", "/api/watch-here", {"json": {"streamId": "demo", "deviceId": "x" * 65}}, 400),
    # Operators' grant endpoints: not for viewers
    ("GET", "/api/sessions/{sid}/grants", {}, 401),
    ("POST", "/api/grants/" + VALID_BUT_UNKNOWN_SESSION + "/end", {}, 401),
    # GET/POST /api/user-sessions
    ("GET", "/api/user-sessions", {"params": {"userId": "<script>"}}, 400),
    ("POST", "/api/user-sessions", {"data": b"not json"}, 400),
    ("POST", "/api/user-sessions", {"json": {}}, 400),
    ("POST", "/api/user-sessions", {"json": {"streamId": ["demo"]}}, 400),
    ("POST", "/api/user-sessions", {"json": {"streamId": "nope"}}, 404),
    # GET /api/qr/{sessionId}.png
    ("GET", "/api/qr/short.png", {}, 400),
    ("GET", f"/api/qr/{VALID_BUT_UNKNOWN_SESSION}.png", {}, 404),
    ("GET", "/api/qr/%2e%2e%2fsecret.png", {}, 400),
    # POST /simulator/pay/{trxId}
    ("POST", "/simulator/pay/NOSUCHTRX", {}, 404),
    ("POST", "/simulator/pay/{trx}", {"json": {"amount": "all of it"}}, 400),
    ("POST", "/simulator/pay/{trx}", {"json": {"amount": -1}}, 400),
    ("POST", "/simulator/pay/{trx}", {"data": b"[1,2"}, 400),
    ("POST", "/simulator/pay/a%20b", {}, 400),
    # Unknown routes and methods
    ("GET", "/api/" + "x" * 3000, {}, 404),
    ("PUT", "/api/check-access", {}, 405),
]


def fill(value: Any, qr: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.replace("{sid}", qr["sessionId"]).replace("{trx}", qr["trxId"])
    if isinstance(value, dict):
        return {key: fill(item, qr) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, qr) for item in value]
    if isinstance(value, tuple):
        return tuple(fill(item, qr) for item in value)
    return value


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), CASES,
                         ids=[f"{m} {p[:40]} {str(k)[:40]}" for m, p, k, _ in CASES])
async def test_bad_input_gets_a_json_4xx_and_changes_nothing(
        viewer: ViewerClient, settings: Settings,
        method: str, path: str, kwargs: dict[str, Any], status: int) -> None:
    qr = await viewer.generate_qris()
    before = store_snapshot(settings)
    async with viewer.http.request(method, fill(path, qr), **fill(kwargs, qr)) as response:
        text = await response.text()
        assert response.status == status, text
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["code"], str) and body["code"]
    assert set(body) == {"success", "error", "code"}
    assert "Traceback" not in text and 'File "' not in text
    assert store_snapshot(settings) == before


@pytest.mark.parametrize(("language", "expected"), [
    ("id-ID,id;q=0.9", "Permintaan tidak valid: periksa isian streamId."),
    ("en-US,en;q=0.9", "Invalid request: check the field streamId."),
])
async def test_refusals_name_the_field_in_the_viewers_language_never_library_text(
        viewer: ViewerClient, language: str, expected: str) -> None:
    body = await viewer.call("POST", "/api/generate-qris", expect=400,
                             json={"streamId": 5}, headers={"Accept-Language": language})
    assert body == {"success": False, "error": expected, "code": "invalid_request"}
    missing = await viewer.call("POST", "/api/generate-qris", expect=400, json={},
                                headers={"Accept-Language": language})
    assert missing["error"] == expected
    broken = await viewer.call("POST", "/api/generate-qris", expect=400, data=b"{",
                               headers={"Accept-Language": language})
    assert broken["error"] in ("Permintaan tidak valid.", "Invalid request.")
    for said in (body["error"], missing["error"], broken["error"]):
        assert "Expected" not in said and "`" not in said and "JSON" not in said
