"""The SPEC's HTTP API, driven through the real app: shapes, units and status codes."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import START_MS, FakeClock, ViewerClient

QR_FIELDS = {"sessionId", "trxId", "qrString", "qrCode", "qrCard", "amount", "fee", "streamId",
             "status", "expiresAt", "remainingTime", "merchantName", "nmid"}


async def test_streams_list_ids_titles_and_prices_but_never_origins(viewer: ViewerClient) -> None:
    body = await viewer.call("GET", "/api/streams", expect=200)
    streams = body["data"]["streams"]
    assert {"id": "demo", "title": "Demo Live: Pola Uji", "price": 1000, "status": "live",
            "startsAt": None, "endsAt": None, "description": None, "poster": None,
            "accessSeconds": 7200} in streams
    assert all(set(stream) == {"id", "title", "price", "status", "startsAt", "endsAt",
                               "description", "poster", "accessSeconds"}
               for stream in streams)


async def test_generate_qris_creates_then_returns_the_same_pending_session(
        viewer: ViewerClient) -> None:
    created = await viewer.generate_qris("demo", expect=201)
    assert set(created) == QR_FIELDS
    assert created["amount"] == 1000 and created["fee"] == 0 and created["status"] == "pending"
    assert created["expiresAt"] == START_MS + 1_200_000  # ms since the epoch
    assert created["remainingTime"] == 1_200_000  # ms
    assert created["qrCode"] == f"/api/qr/{created['sessionId']}.png"
    assert created["qrCard"] == f"/api/qr/{created['sessionId']}/card.png"  # "Simpan QR"
    assert created["qrString"].startswith("000201010212")
    # The simulator's merchant, read back from the payload the viewer will scan.
    assert (created["merchantName"], created["nmid"]) == ("STREAM PAYGATE", "ID1026000000001")

    again = await viewer.generate_qris("demo", expect=200, amount=1000)
    assert again == created


async def test_amount_if_sent_must_be_the_price(viewer: ViewerClient) -> None:
    body = await viewer.generate_qris("demo", expect=400, amount=500)
    assert body == {"success": False, "code": "amount_mismatch",
                    "error": "Jumlah pembayaran harus sama dengan harga stream: Rp 1.000"}


async def test_paid_viewer_asking_again_gets_409(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"])
    body = await viewer.generate_qris(expect=409)
    assert body == {"success": False, "code": "already_has_access",
                    "error": "Anda sudah memiliki akses untuk stream ini"}


async def test_errors_speak_english_when_asked(viewer: ViewerClient) -> None:
    body = await viewer.call("POST", "/api/generate-qris", json={"streamId": "nope"},
                             headers={"Accept-Language": "en-US,en;q=0.9,id;q=0.5"},
                             expect=404)
    assert body["error"] == "Stream not found" and body["code"] == "unknown_stream"


async def test_status_poll_by_session_or_trx(viewer: ViewerClient, clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    clock.advance(10)
    by_session = await viewer.status(qr["sessionId"])
    assert by_session == {"status": "pending", "sessionId": qr["sessionId"],
                          "trxId": qr["trxId"], "remainingTime": 1_190_000, "paidAt": None,
                          "expiresAt": qr["expiresAt"]}
    by_trx = await viewer.call("GET", "/api/payment-callback",
                               params={"trxId": qr["trxId"]}, expect=200)
    assert by_trx["data"] == by_session
    mismatch = await viewer.call("GET", "/api/payment-callback", expect=404,
                                 params={"trxId": "OTHER", "sessionId": qr["sessionId"]})
    assert mismatch["code"] == "session_not_found"

    await viewer.pay(qr["trxId"])
    paid = await viewer.status(qr["sessionId"])
    assert paid["status"] == "paid" and paid["paidAt"] == clock()
    assert paid["expiresAt"] == clock() + 7_200_000
    clock.advance(7200)
    assert (await viewer.status(qr["sessionId"]))["status"] == "expired"


async def test_check_access_before_and_after_payment(viewer: ViewerClient,
                                                     clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    before = await viewer.check_access("demo", qr["sessionId"])
    assert before == {"hasAccess": False, "streamId": "demo", "sessionId": qr["sessionId"],
                      "remainingTime": 0}
    await viewer.pay(qr["trxId"])
    clock.advance(60)
    after = await viewer.check_access("demo", qr["sessionId"])
    assert after["hasAccess"] and after["remainingTime"] == 7_140_000
    without_id = await viewer.check_access("demo")
    assert without_id["hasAccess"] and without_id["sessionId"] == qr["sessionId"]
    assert not (await viewer.check_access("konser-malam"))["hasAccess"]


async def test_user_sessions_lists_only_the_callers_active_sessions(
        viewer: ViewerClient, other_viewer: ViewerClient, clock: FakeClock) -> None:
    demo = await viewer.generate_qris("demo")
    await viewer.pay(demo["trxId"])
    clock.advance(1)
    concert = await viewer.generate_qris("konser-malam")
    await other_viewer.generate_qris("demo")

    listing = (await viewer.call("GET", "/api/user-sessions", expect=200))["data"]
    assert listing["totalActive"] == 2
    assert [(s["sessionId"], s["status"]) for s in listing["activeSessions"]] == [
        (demo["sessionId"], "paid"), (concert["sessionId"], "pending")]

    one = await viewer.call("POST", "/api/user-sessions", json={"streamId": "demo"}, expect=200)
    assert one["data"] == {"hasAccess": True, "streamId": "demo",
                           "sessionId": demo["sessionId"], "remainingTime": 7_199_000,
                           "totalActive": 2}
    clock.advance(1200)  # the pending QR expires; the paid access stays
    listing = (await viewer.call("GET", "/api/user-sessions", expect=200))["data"]
    assert [s["sessionId"] for s in listing["activeSessions"]] == [demo["sessionId"]]


async def test_concurrent_qr_requests_from_one_viewer_share_one_session(
        viewer: ViewerClient) -> None:
    await viewer.call("GET", "/api/user-sessions")  # get the viewer cookie first

    async def ask() -> tuple[int, str]:
        async with viewer.http.post("/api/generate-qris", json={"streamId": "demo"}) as resp:
            return resp.status, (await resp.json())["data"]["sessionId"]

    results = await asyncio.gather(*(ask() for _ in range(20)))
    assert sorted(status for status, _ in results) == [200] * 19 + [201]
    assert len({session_id for _, session_id in results}) == 1


async def test_qr_image_is_a_private_png(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    async with viewer.http.get(qr["qrCode"]) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert response.headers["Cache-Control"] == "private, max-age=1200"
        assert (await response.read()).startswith(b"\x89PNG\r\n\x1a\n")


async def test_health_and_unknown_routes(viewer: ViewerClient) -> None:
    assert (await viewer.call("GET", "/healthz", expect=200))["data"] == {"status": "ok"}
    missing = await viewer.call("GET", "/api/nope", expect=404)
    assert missing["code"] == "not_found" and missing["success"] is False
    async with viewer.http.delete("/api/generate-qris") as response:
        assert response.status == 405 and response.headers["Allow"] == "POST"
        assert (await response.json())["code"] == "method_not_allowed"



@pytest.mark.parametrize("method, path", [
    ("POST", "/api/sessions/{session_id}/revoke"),
    ("GET", "/api/notifications"),
    ("GET", "/metrics"),
])
@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong-key-0123456789abcdef"},
                                     {"Authorization": "Bearer wrong"}])
async def test_operator_endpoints_answer_a_missing_or_wrong_key_with_401_and_no_cookie(
        viewer: ViewerClient, other_viewer: ViewerClient, method: str, path: str,
        headers: dict[str, str]) -> None:
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"])
    # A browser that has never been here: it must not leave with a viewer cookie.
    async with other_viewer.http.request(method, path.format(session_id=qr["sessionId"]),
                                         headers=headers) as reply:
        assert reply.status == 401
        assert (await reply.json())["code"] == "unauthenticated"
        assert "Set-Cookie" not in reply.headers
    # A refused revocation changes nothing: the payer still has access.
    assert (await viewer.check_access("demo", qr["sessionId"]))["hasAccess"] is True
