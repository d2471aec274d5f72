"""Issue 27 in the system Chromium, at phone width in Indonesian and desktop width in
English: a viewer whose ticket was taken away (revoked, refunded, show cancelled, moved
to another device) is told what happened and never asked to pay again; the phone's
first screen holds the amount, the QR, the time left and the live status; "Simpan QR"
saves a card; screens that cannot take money say nothing about scanning and show no
dead countdown. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from aiohttp.test_utils import TestServer
from PIL import Image

from gateway.app import create_app
from gateway.settings import PACKAGE_DIR
from tests.browser.conftest import failing_provider_site
from tests.browser.test_watch_page import shot, until
from tests.conftest import API_KEY, make_settings
from tests.gate.conftest import write_catalog
from tests.server_process import free_port

pytestmark = pytest.mark.browser

DEMO_SEGMENTS = PACKAGE_DIR / "demo" / "live"
PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "id-ID"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "en-US"}
VIEWERS = [pytest.param(PHONE, id="phone-id"), pytest.param(DESKTOP, id="desktop-en")]
OPERATOR = {"X-Api-Key": API_KEY}
SUPPORT_URL = "mailto:bantuan@tonton.example"
TEXT = {
    "id-ID": {"revoked": "Akses Anda dihentikan oleh penyelenggara",
              "refunded": "Tiket Anda dibatalkan dan uangnya dikembalikan",
              "refund_done": "Uang tiket Anda (Rp 1.000) sudah dikembalikan.",
              "cancelled": "Acara ini dibatalkan",
              "cancel_reason": "Alasan dari penyelenggara: Hujan badai",
              "support": "Hubungi bantuan",
              "moved": "Pemutaran di perangkat ini dihentikan karena pembelian ini "
                       "dipindahkan ke perangkat lain.",
              "pay_again": ["Bayar lagi", "Buat kode QR baru"],
              "scan": "pindai", "save": "Simpan QR",
              "offline": "Siaran sedang tidak tayang. Coba lagi nanti.",
              "provider_down": "Penyedia pembayaran sedang tidak dapat dihubungi",
              "access_ended": "Akses Anda telah berakhir. Bayar lagi untuk terus menonton.",
              "waiting": "Menunggu pembayaran…"},
    "en-US": {"revoked": "Your access was ended by the organiser",
              "refunded": "Your ticket was refunded",
              "refund_done": "Your ticket's money (Rp 1.000) has been given back.",
              "cancelled": "This show was cancelled",
              "cancel_reason": "The organiser's reason: Hujan badai",
              "support": "Contact support",
              "moved": "Playback on this device stopped because this purchase was moved "
                       "to another device.",
              "pay_again": ["Pay again", "new QR code"],
              "scan": "scan", "save": "Save QR",
              "offline": "This stream is off the air. Please try again later.",
              "provider_down": "The payment provider cannot be reached",
              "access_ended": "Your access has ended. Pay again to keep watching.",
              "waiting": "Waiting for payment…"},
}
SiteFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def make_site(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
              ) -> SiteFactory:
    async def make(**env: str) -> str:
        settings = make_settings(tmp_path, GATEWAY_SUPPORT_URL=SUPPORT_URL, **env)
        server = await aiohttp_server(create_app(settings))
        return str(server.make_url("/")).rstrip("/")

    return make


async def buy(context: Any, site: str, stream_id: str = "demo") -> dict[str, Any]:
    """Pay as the provider would, from outside the page; the session bought."""
    qr = (await (await context.request.post(f"{site}/api/generate-qris",
                                            data={"streamId": stream_id})).json())["data"]
    paid = await context.request.post(f"{site}/simulator/pay/{qr['trxId']}")
    assert (await paid.json())["data"]["applied"] is True
    return dict(qr)


async def watching(context: Any, site: str) -> Any:
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await page.locator("#player-panel").wait_for(state="visible", timeout=10_000)
    return page


async def visible_text(page: Any) -> str:
    """What a viewer can read (innerText leaves out what is hidden)."""
    return str(await page.evaluate("document.body.innerText"))


async def assert_never_asked_to_pay(page: Any, text: dict[str, Any]) -> None:
    shown = await visible_text(page)
    for words in text["pay_again"]:
        assert words not in shown
    assert text["scan"] not in shown.lower()
    for element in ("#pay-panel", "#new-qr", "#qr-image", "#player-panel",
                    "#pay-countdown-line"):
        assert await page.locator(element).is_hidden(), element


async def assert_takes_no_money(page: Any, text: dict[str, Any]) -> None:
    """Point 4: no "scan this QRIS", no QR, no countdown counting down nothing."""
    assert text["scan"] not in (await visible_text(page)).lower()
    assert await page.locator("#qr-image").is_hidden()
    assert await page.locator("#pay-countdown-line").is_hidden()
    assert await page.locator("#pay-countdown").is_hidden()


async def no_new_qr_was_made(context: Any, site: str) -> None:
    sessions = await (await context.request.get(f"{site}/api/user-sessions")).json()
    assert [s for s in sessions["data"]["activeSessions"] if s["status"] == "pending"] == []


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_a_revoked_viewer_is_told_the_organiser_ended_it(
        browser: Any, make_site: SiteFactory, viewer: dict[str, Any]) -> None:
    text = TEXT[viewer["locale"]]
    site = await make_site()
    context = await browser.new_context(**viewer)
    qr = await buy(context, site)
    page = await watching(context, site)

    revoked = await context.request.post(f"{site}/api/sessions/{qr['sessionId']}/revoke",
                                         headers=OPERATOR)
    assert revoked.ok
    await page.locator("#ended-panel").wait_for(state="visible", timeout=15_000)
    assert await page.locator("#ended-heading").text_content() == text["revoked"]
    support = page.get_by_role("link", name=text["support"])
    assert await support.get_attribute("href") == SUPPORT_URL
    await assert_never_asked_to_pay(page, text)
    assert await page.evaluate("document.getElementById('video').paused") is True
    await shot(page, f"27-1-revoked-{viewer['locale']}")

    # Coming back later says the same, and makes no new QR behind the viewer's back.
    again = await context.new_page()
    await again.goto(f"{site}/watch/demo")
    await again.locator("#ended-panel").wait_for(state="visible")
    assert await again.locator("#ended-heading").text_content() == text["revoked"]
    await assert_never_asked_to_pay(again, text)
    await no_new_qr_was_made(context, site)
    await context.close()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_a_refunded_viewer_is_told_the_amount_and_where_it_stands(
        browser: Any, make_site: SiteFactory, viewer: dict[str, Any]) -> None:
    text = TEXT[viewer["locale"]]
    site = await make_site()
    context = await browser.new_context(**viewer)
    qr = await buy(context, site)
    page = await watching(context, site)

    refund = await context.request.post(f"{site}/api/refunds", headers=OPERATOR,
                                        data={"trxId": qr["trxId"], "reason": "salah beli"})
    assert refund.status == 202
    await page.locator("#ended-panel").wait_for(state="visible", timeout=15_000)
    assert await page.locator("#ended-heading").text_content() == text["refunded"]
    # The simulator gives the money back at once; the page catches up if it asked first.
    await until(page, "document.getElementById('ended-refunds').textContent === "
                      f"{text['refund_done']!r}", 15)
    await assert_never_asked_to_pay(page, text)
    await shot(page, f"27-1-refunded-{viewer['locale']}")
    await no_new_qr_was_made(context, site)
    await context.close()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_a_show_cancelled_while_watching_says_so_and_takes_no_money(
        browser: Any, make_site: SiteFactory, viewer: dict[str, Any]) -> None:
    text = TEXT[viewer["locale"]]
    site = await make_site()
    context = await browser.new_context(**viewer)
    await buy(context, site)
    page = await watching(context, site)

    cancelled = await context.request.post(f"{site}/api/streams/demo/cancel",
                                           headers=OPERATOR, data={"reason": "Hujan badai"})
    assert cancelled.ok
    await page.locator("#ended-panel").wait_for(state="visible", timeout=15_000)
    assert await page.locator("#ended-heading").text_content() == text["cancelled"]
    assert await page.locator("#ended-text").text_content() == text["cancel_reason"]
    # A cancelled show's refunds are asked in the background (first after 5 s); the page
    # says the money is on its way, then that it is back, without a reload.
    await until(page, "document.getElementById('ended-refunds').textContent === "
                      f"{text['refund_done']!r}", 40)
    await assert_never_asked_to_pay(page, text)
    await shot(page, f"27-1-cancelled-live-{viewer['locale']}")

    # The cancelled show's own page, as anyone opens it now.
    again = await context.new_page()
    await again.goto(f"{site}/watch/demo")
    assert await again.locator("#cancelled-panel").is_visible()
    await assert_takes_no_money(again, text)
    await assert_never_asked_to_pay(again, text)
    await shot(again, f"27-4-cancelled-page-{viewer['locale']}")
    await context.close()


@pytest.mark.parametrize(("moved_away", "moved_to"), [
    pytest.param(PHONE, DESKTOP, id="phone-id"),
    pytest.param(DESKTOP, PHONE, id="desktop-en"),
])
async def test_a_viewer_whose_playback_moved_is_told_where_it_went(
        browser: Any, make_site: SiteFactory, moved_away: dict[str, Any],
        moved_to: dict[str, Any]) -> None:
    text = TEXT[moved_away["locale"]]
    # Both browsers run here: each says where it plays from as a trusted proxy would.
    site = await make_site(GATEWAY_MAX_DEVICES="1", GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    home = await browser.new_context(**moved_away,
                                     extra_http_headers={"X-Forwarded-For": "203.0.113.1"})
    await buy(home, site)
    at_home = await watching(home, site)
    await until(at_home, "document.getElementById('video').currentTime > 0.5", 30)

    away = await browser.new_context(**moved_to,
                                     extra_http_headers={"X-Forwarded-For": "203.0.113.2"})
    await away.add_cookies([cookie for cookie in await home.cookies()
                            if cookie["name"] == "viewer"])
    elsewhere = await away.new_page()
    await elsewhere.goto(f"{site}/watch/demo")
    await elsewhere.locator("#watch-here").click()
    await elsewhere.locator("#player-panel").wait_for(state="visible", timeout=10_000)

    await at_home.locator("#device-panel").wait_for(state="visible", timeout=30_000)
    assert await at_home.locator("#device-moved").text_content() == text["moved"]
    await assert_never_asked_to_pay(at_home, text)
    await shot(at_home, f"27-1-moved-away-{moved_away['locale']}")
    await home.close()
    await away.close()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_the_first_screen_holds_what_a_payer_needs_and_saves_a_card(
        browser: Any, make_site: SiteFactory, viewer: dict[str, Any]) -> None:
    text = TEXT[viewer["locale"]]
    site = await make_site()
    context = await browser.new_context(accept_downloads=True, **viewer)
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await page.locator("#qr-image").wait_for(state="visible")
    await until(page, f"document.getElementById('status').textContent === {text['waiting']!r}")
    height = viewer["viewport"]["height"]
    # Amount, QR, time left and live status, all on the first screen, without scrolling.
    for element in ("#pay-amount", "#qr-image", "#pay-countdown", "#live-badge", "#status",
                    ".qris-wordmark", "#qr-merchant-name", "#qr-nmid", "#save-hint"):
        box = await page.locator(element).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, (
            element, box)
    assert await page.locator(".qris-wordmark").text_content() == "QRIS"
    # "Same phone? save the QR": right under the QR, beside its button.
    qr_box = await page.locator("#qr-image").bounding_box()
    hint_box = await page.locator("#save-hint").bounding_box()
    button_box = await page.locator("#save-qr").bounding_box()
    assert qr_box and hint_box and button_box
    assert 0 <= hint_box["y"] - (qr_box["y"] + qr_box["height"]) < 80
    assert abs((hint_box["y"] + hint_box["height"] / 2)
               - (button_box["y"] + button_box["height"] / 2)) < 30
    width = viewer["viewport"]["width"]
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    await shot(page, f"27-3-first-screen-{viewer['locale']}")

    # "Simpan QR" saves a card: the code (still readable) with what it pays and to whom.
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name=text["save"]).click()
    download = await download_info.value
    assert download.suggested_filename == "QRIS-demo-Rp1000.png"
    card = Image.open(io.BytesIO(Path(await download.path()).read_bytes()))
    assert card.height > card.width  # more than the bare, square code
    # Asking again gives the same pending session (rule 2): its payload is on the card.
    qr = (await (await context.request.post(f"{site}/api/generate-qris",
                                            data={"streamId": "demo"})).json())["data"]
    decoded = zxingcpp.read_barcodes(card)
    assert [code.text for code in decoded] == [qr["qrString"]]
    await context.close()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_screens_that_take_no_money_say_nothing_of_scanning(
        browser: Any, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]],
        viewer: dict[str, Any]) -> None:
    text = TEXT[viewer["locale"]]
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "demo", "title": "Demo Live", "price": 1000,
         "origin": f"file://{DEMO_SEGMENTS}/", "loop": True},
        {"id": "down", "title": "Origin Mati", "price": 2000,
         "origin": f"http://127.0.0.1:{free_port()}/"},
    ])
    settings = make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                             GATEWAY_ACCESS_SECONDS="6")
    site = str((await aiohttp_server(create_app(settings))).make_url("/")).rstrip("/")
    context = await browser.new_context(**viewer)
    request = context.request

    # Off the air, and never sold before a check (point 2): an origin that has never
    # answered is offline from the first request on, not after a grace minute.
    streams = (await (await request.get(f"{site}/api/streams")).json())["data"]
    assert {s["id"]: s["status"] for s in streams["streams"]}["down"] == "offline"
    refused = await request.post(f"{site}/api/generate-qris", data={"streamId": "down"})
    assert (refused.status, (await refused.json())["code"]) == (409, "stream_offline")
    page = await context.new_page()
    await page.goto(f"{site}/watch/down")
    await until(page, f"document.getElementById('status').textContent === {text['offline']!r}")
    await assert_takes_no_money(page, text)
    await shot(page, f"27-4-offline-{viewer['locale']}")

    # Access run out (6 s here): the way to buy again, but no QR until asked for.
    await buy(context, site)
    await page.goto(f"{site}/watch/demo")
    await until(page, "document.getElementById('status').textContent === "
                      f"{text['access_ended']!r}", 20)
    await assert_takes_no_money(page, text)
    assert await page.locator("#new-qr").is_visible()
    await shot(page, f"27-4-access-ended-{viewer['locale']}")
    await context.close()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_a_provider_down_screen_says_nothing_of_scanning(
        browser: Any, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]],
        viewer: dict[str, Any]) -> None:
    text = TEXT[viewer["locale"]]
    site, _ = await failing_provider_site(tmp_path, aiohttp_server)
    context = await browser.new_context(**viewer)
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await until(page, "document.getElementById('status').textContent.startsWith("
                      f"{text['provider_down']!r})")
    await assert_takes_no_money(page, text)
    await shot(page, f"27-4-provider-down-{viewer['locale']}")
    await context.close()
