"""Tickets bought ahead, carrying on without a gap, and what the viewer bought ("Tiket
saya", receipts): through the real app, on SQLite and on Redis."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.settings import PACKAGE_DIR, Settings
from tests.conftest import (
    API_KEY,
    START_MS,
    AppFactory,
    FakeClock,
    ViewerClient,
    make_settings,
)
from tests.gate.conftest import write_catalog

DEMO_SEGMENTS = PACKAGE_DIR / "demo" / "live"
HOUR_MS = 3600 * 1000
MINUTE_MS = 60 * 1000


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.fixture
def event_settings(settings: Settings, tmp_path: Path) -> Settings:
    catalog = write_catalog(tmp_path / "events.toml", [
        {"id": "demo", "title": "Demo", "price": 1000, "origin": f"file://{DEMO_SEGMENTS}/",
         "loop": True},
        {"id": "konser", "title": "Konser Malam", "price": 25000,
         "origin": f"file://{DEMO_SEGMENTS}/", "loop": True,
         "starts_at": rfc3339(START_MS + HOUR_MS), "access_seconds": 3 * 3600},
    ])
    return make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                         GATEWAY_STORE=settings.store_url,
                         GATEWAY_REDIS_KEY_PREFIX=settings.redis_key_prefix)


@pytest.fixture
async def fan(make_viewer: AppFactory, event_settings: Settings) -> ViewerClient:
    return await make_viewer(event_settings)


async def page(viewer: ViewerClient, path: str, **headers: str) -> tuple[int, str]:
    async with viewer.http.get(path, headers={"Accept": "text/html", **headers}) as response:
        return response.status, await response.text()


async def test_a_ticket_bought_ahead_opens_at_the_start_and_lasts_its_own_window(
        fan: ViewerClient, clock: FakeClock) -> None:
    qr = await fan.generate_qris("konser")
    clock.advance(60)
    await fan.pay(qr["trxId"])
    waiting = await fan.check_access("konser")
    assert waiting["hasAccess"] is False and "playbackUrl" not in waiting
    assert waiting["sessionId"] == qr["sessionId"]
    assert waiting["startsAt"] == START_MS + HOUR_MS
    assert waiting["startsIn"] == HOUR_MS - 60_000
    # Holding a ticket is holding access: no second QR for the same event.
    refused = await fan.generate_qris("konser", expect=409)
    assert refused["code"] == "already_has_access"
    status = await fan.status(qr["sessionId"])
    assert status["status"] == "paid" and status["expiresAt"] == START_MS + 4 * HOUR_MS

    clock.now_ms = START_MS + HOUR_MS
    opened = await fan.check_access("konser")
    assert opened["hasAccess"] is True and opened["remainingTime"] == 3 * HOUR_MS
    assert "startsIn" not in opened and opened["playbackUrl"]


async def test_the_watch_page_of_a_ticket_ahead_counts_down_to_the_start(
        fan: ViewerClient, clock: FakeClock) -> None:
    qr = await fan.generate_qris("konser")
    await fan.pay(qr["trxId"])
    status, html = await page(fan, "/watch/konser")
    assert status == 200
    assert '"startsIn": 3600000' in html
    assert not re.search(r'<section id="waiting-panel"[^>]*hidden', html)


async def test_the_next_window_can_be_bought_in_the_last_ten_minutes(
        fan: ViewerClient, clock: FakeClock) -> None:
    qr = await fan.generate_qris("demo")
    await fan.pay(qr["trxId"])
    clock.advance(2 * 3600 - 11 * 60)
    refused = await fan.generate_qris("demo", expect=409)
    assert refused["code"] == "already_has_access"

    clock.advance(2 * 60)  # 9 minutes left
    renewal = await fan.generate_qris("demo", expect=201)
    assert renewal["sessionId"] != qr["sessionId"] and renewal["status"] == "pending"
    assert (await fan.generate_qris("demo", expect=200))["sessionId"] == renewal["sessionId"]
    watching = await fan.check_access("demo")
    assert watching["hasAccess"] and watching["sessionId"] == qr["sessionId"]
    assert "next" not in watching  # not paid yet

    await fan.pay(renewal["trxId"])
    watching = await fan.check_access("demo")
    assert watching["sessionId"] == qr["sessionId"]
    assert watching["next"]["sessionId"] == renewal["sessionId"]
    assert watching["next"]["startsAt"] == START_MS + 2 * HOUR_MS
    assert watching["next"]["remainingTime"] == 9 * MINUTE_MS + 2 * HOUR_MS

    clock.now_ms = START_MS + 2 * HOUR_MS  # the first window ends: the second carries on
    carried = await fan.check_access("demo")
    assert carried["hasAccess"] and carried["sessionId"] == renewal["sessionId"]
    assert carried["remainingTime"] == 2 * HOUR_MS


async def test_my_tickets_lists_purchases_with_receipts(
        fan: ViewerClient, other: ViewerClient, clock: FakeClock) -> None:
    status, html = await page(fan, "/tickets")
    assert status == 200 and "Belum ada pembelian" in html
    qr = await fan.generate_qris("konser")
    clock.advance(30)
    await fan.pay(qr["trxId"])
    clock.advance(30)
    demo = await fan.generate_qris("demo")
    await fan.pay(demo["trxId"])
    unpaid = await other.generate_qris("demo")

    status, html = await page(fan, "/tickets")
    assert status == 200
    assert html.index("Demo") < html.index("Konser Malam")  # newest payment first
    assert "Rp 25.000" in html and qr["trxId"] in html and demo["trxId"] in html
    assert "Berlaku mulai" in html and "Aktif: sisa 2 jam" in html
    receipt_path = f"/tickets/{qr['sessionId']}"
    assert f'href="{receipt_path}"' in html

    status, receipt = await page(fan, receipt_path, **{"Accept-Language": "en"})
    assert status == 200 and "Payment receipt" in receipt
    assert re.search(r'id="receipt-amount">Rp 25\.000<', receipt)
    assert re.search(r'id="receipt-nmid">ID\d+<', receipt)
    assert f'id="receipt-trx">{qr["trxId"]}<' in receipt
    # Another viewer's receipt, and an unpaid QR, are nobody's business.
    assert (await page(other, receipt_path))[0] == 403
    assert (await page(other, f"/tickets/{unpaid['sessionId']}"))[0] == 404
    _, theirs = await page(other, "/tickets")
    assert qr["trxId"] not in theirs


async def test_the_list_marks_streams_held(fan: ViewerClient) -> None:
    _, before = await page(fan, "/")
    assert "TIKET ANDA" not in before
    qr = await fan.generate_qris("konser")
    await fan.pay(qr["trxId"])
    _, after = await page(fan, "/")
    card = after[after.index('id="stream-konser"'):]
    assert "TIKET ANDA" in card[:card.index("</li>")]
    assert "Tiket Anda berlaku mulai" in after and "SEGERA" in after


async def test_pages_that_only_look_issue_no_cookie(fan: ViewerClient) -> None:
    for path in ("/", "/tickets"):
        async with fan.http.get(path, headers={"Accept": "text/html"}) as response:
            assert "Set-Cookie" not in response.headers, path
            assert 'href="/tickets"' in await response.text()


@pytest.fixture
async def other(fan: ViewerClient, make_viewer: AppFactory) -> ViewerClient:
    return await make_viewer()


async def test_my_tickets_says_what_ended_a_ticket_early(
        fan: ViewerClient, clock: FakeClock) -> None:
    """Issue 27: a ticket the organiser took away says so, not a plain "ended"."""
    qr = await fan.generate_qris("demo")
    await fan.pay(qr["trxId"])
    await fan.call("POST", f"/api/sessions/{qr['sessionId']}/revoke",
                   headers={"X-Api-Key": API_KEY}, expect=200)
    _, html = await page(fan, "/tickets")
    assert "Dihentikan oleh penyelenggara" in html and "Sudah berakhir" not in html
    _, html = await page(fan, "/tickets", **{"Accept-Language": "en"})
    assert "Ended by the organiser" in html
