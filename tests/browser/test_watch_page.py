"""The whole viewer experience in the system Chromium, driven by Playwright: the QR, a
payment, the page turning into a playing player with no reload, access ending, the pay
panel coming back. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.keys import WEBSOCKETS
from gateway.routes import HLS_JS_FILE
from gateway.settings import PROJECT_DIR
from tests.browser.conftest import failing_provider_site
from tests.conftest import API_KEY, IN_CI, make_settings

SCREENSHOTS = PROJECT_DIR / "test-output" / "screenshots"
# Long enough for a slow start on a busy 2-core machine, short enough to wait out.
SHORT_ACCESS_SECONDS = 15
pytestmark = pytest.mark.browser


@pytest.fixture
async def server(tmp_path: Path,
                 aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    # The real clock: the demo's live window and the expiry push run on real time.
    return await aiohttp_server(create_app(make_settings(tmp_path)))


@pytest.fixture
def site(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


@pytest.fixture
async def short_access_site(tmp_path: Path,
                            aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    settings = make_settings(tmp_path, GATEWAY_ACCESS_SECONDS=str(SHORT_ACCESS_SECONDS))
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("/")).rstrip("/")


async def until(page: Any, expression: str, timeout_s: float = 10) -> None:
    """Poll a page condition. Playwright's wait_for_function evaluates strings inside the
    page, which our Content-Security-Policy (rightly) forbids; evaluate() does not."""
    deadline = time.monotonic() + timeout_s
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            state = await page.evaluate(PLAYER_STATE)
            raise AssertionError(f"timed out waiting for: {expression}; page: {state}")
        await asyncio.sleep(0.1)


# What to report when a wait fails: enough to tell a stall from an error from a 403.
PLAYER_STATE = """() => {
  const v = document.getElementById('video');
  const ranges = [];
  for (let i = 0; v && i < v.buffered.length; i++) {
    ranges.push([v.buffered.start(i), v.buffered.end(i)]);
  }
  return {status: document.getElementById('status').textContent,
          payHidden: document.getElementById('pay-panel').hidden,
          src: v && v.currentSrc, time: v && v.currentTime, paused: v && v.paused,
          readyState: v && v.readyState, networkState: v && v.networkState,
          error: v && v.error && v.error.code, buffered: ranges};
}"""


async def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def test_pay_watch_and_lose_access_without_a_reload(browser: Any,
                                                          short_access_site: str) -> None:
    site = short_access_site
    context = await browser.new_context(viewport={"width": 390, "height": 844},  # a phone
                                        locale="id-ID")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{site}/watch/demo")

    # The pay panel: QR image, amount, countdown, live status.
    qr = page.locator("#qr-image")
    await qr.wait_for(state="visible")
    assert await qr.get_attribute("alt") == "Kode QRIS untuk membayar Rp 1.000"
    assert await page.evaluate("document.getElementById('qr-image').naturalWidth") > 100
    await until(page, "document.getElementById('status').textContent === 'Menunggu pembayaran…'")
    countdown = await page.locator("#pay-countdown").text_content()
    assert countdown is not None and countdown.startswith(("20:", "19:"))
    assert await page.locator("#player-panel").is_hidden()
    await shot(page, "1-pay-panel")

    # Pay in a second request, as the provider would: the page is not told.
    await page.evaluate("window.__sameDocument = true")
    sessions = await (await context.request.get(f"{site}/api/user-sessions")).json()
    trx_id = sessions["data"]["activeSessions"][0]["trxId"]
    paid = await context.request.post(f"{site}/simulator/pay/{trx_id}")
    assert (await paid.json())["data"]["applied"] is True

    # The page turns into a playing player by itself.
    await page.locator("#player-panel").wait_for(state="visible", timeout=10_000)
    assert await page.locator("#pay-panel").is_hidden()
    start = await page.evaluate("document.getElementById('video').currentTime")
    await until(page, f"document.getElementById('video').currentTime > {start} + 1.5", 30)
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    assert await page.evaluate("document.getElementById('video').paused") is False
    await shot(page, "2-playing")

    # Access ends: playback stops and the pay panel returns with a clear message.
    await page.locator("#pay-panel").wait_for(state="visible",
                                              timeout=SHORT_ACCESS_SECONDS * 1000 + 5000)
    assert await page.locator("#player-panel").is_hidden()
    assert await page.locator("#status").text_content() == (
        "Akses Anda telah berakhir. Bayar lagi untuk terus menonton.")
    assert await page.evaluate("document.getElementById('video').paused") is True
    assert await page.locator("#new-qr").is_visible()
    await shot(page, "3-access-ended")
    assert errors == []
    await context.close()


async def test_a_viewer_with_access_goes_straight_to_the_player(browser: Any,
                                                                site: str) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await page.locator("#simulate").wait_for(state="visible")
    await until(page, "!document.getElementById('simulate').disabled")
    await page.get_by_role("button", name="Simulate payment").click()
    await page.locator("#player-panel").wait_for(state="visible", timeout=10_000)

    again = await context.new_page()  # a new tab: the server renders the player at once
    await again.goto(f"{site}/watch/demo")
    assert await again.locator("#player-panel").is_visible()
    assert await again.locator("#pay-panel").is_hidden()
    await until(again, "document.getElementById('video').currentTime > 0.5", 30)
    assert await again.locator("h1").text_content() == "Demo Live: Pola Uji"
    await shot(again, "4-english-player")
    await context.close()


async def test_the_stream_list_on_a_phone(browser: Any, site: str) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 740},
                                        locale="id-ID")
    page = await context.new_page()
    await page.goto(site + "/")
    cards = page.locator(".stream-card")
    assert await cards.count() == 2
    assert "Rp 25.000" in (await cards.nth(1).text_content() or "")
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await page.get_by_role("link", name="Tonton: Demo Live: Pola Uji").click()
    await page.locator("#qr-image").wait_for(state="visible")
    await shot(page, "0-stream-list-to-watch")
    await context.close()


HIDE_NATIVE_HLS = """
const canPlay = HTMLMediaElement.prototype.canPlayType;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return /mpegurl/i.test(type) ? "" : canPlay.call(this, type);
};
"""
# No status pushes at all: whatever the page does next, the gate's 403 made it do.
SILENT_WEBSOCKET = """
window.WebSocket = class { constructor() {} close() {} send() {} };
"""


@pytest.mark.parametrize("player", ["native", "hls.js"])
async def test_a_403_from_the_gate_stops_the_player_and_says_why(browser: Any, site: str,
                                                               player: str) -> None:
    if player == "hls.js" and not HLS_JS_FILE.is_file():
        message = "hls.js is not installed (npm ci)"
        if IN_CI:
            pytest.fail(f"{message}: .ci/run installs it")
        pytest.skip(f"NOT TESTED: {message}")
    context = await browser.new_context(locale="id-ID")
    if player == "hls.js":
        await context.add_init_script(HIDE_NATIVE_HLS)
    await context.add_init_script(SILENT_WEBSOCKET)
    request = context.request
    qr = (await (await request.post(f"{site}/api/generate-qris",
                                    data={"streamId": "demo"})).json())["data"]
    await request.post(f"{site}/simulator/pay/{qr['trxId']}")

    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await until(page, "document.getElementById('video').currentTime > 1", 30)
    uses_hls_js = await page.evaluate(
        "typeof window.Hls === 'function'"
        " && document.getElementById('video').currentSrc.startsWith('blob:')")
    assert uses_hls_js is (player == "hls.js")

    revoked = await request.post(f"{site}/api/sessions/{qr['sessionId']}/revoke",
                                 headers={"X-Api-Key": API_KEY})
    assert revoked.ok
    # A revoked ticket is told so (issue 27), never asked to pay again.
    await page.locator("#ended-panel").wait_for(state="visible", timeout=20_000)
    assert await page.locator("#ended-heading").text_content() == (
        "Akses Anda dihentikan oleh penyelenggara")
    assert await page.locator("#pay-panel").is_hidden()
    assert await page.evaluate("document.getElementById('video').paused") is True
    await shot(page, f"5-gate-403-{player}")
    await context.close()


async def test_the_page_reconnects_and_catches_up(browser: Any, server: TestServer,
                                                  site: str) -> None:
    context = await browser.new_context(locale="id-ID")
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await until(page, "document.getElementById('status').textContent === 'Menunggu pembayaran…'")
    sessions = await (await context.request.get(f"{site}/api/user-sessions")).json()
    trx_id = sessions["data"]["activeSessions"][0]["trxId"]
    # Every socket dropped, as when an instance restarts (1001), and the payment lands at
    # once, well inside the page's first reconnection delay (at least 250 ms): only the
    # snapshot the reconnection starts with can tell the page it was paid.
    for socket in set(server.app[WEBSOCKETS]):
        await socket.close(code=1001)
    paid = await context.request.post(f"{site}/simulator/pay/{trx_id}")
    assert (await paid.json())["data"]["applied"] is True
    await page.locator("#player-panel").wait_for(state="visible", timeout=15_000)
    await until(page, "document.getElementById('video').currentTime > 0.5", 30)
    await context.close()


def test_screenshot_directory_is_outside_the_repository_index() -> None:
    ignored = (PROJECT_DIR / ".gitignore").read_text()
    assert "/test-output/" in ignored



async def test_a_failing_provider_gets_a_clear_message_and_a_way_to_retry(
        browser: Any, tmp_path: Path,
        aiohttp_server: Callable[..., Awaitable[TestServer]]) -> None:
    site, fake = await failing_provider_site(tmp_path, aiohttp_server)
    context = await browser.new_context(locale="id-ID")
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    await until(page, "document.getElementById('status').textContent.startsWith("
                      "'Penyedia pembayaran sedang tidak dapat dihubungi')")
    assert await page.locator("#new-qr").is_visible()
    assert await page.locator("#qr-image").is_hidden()
    assert await page.locator("#simulate").count() == 0  # real money: no simulator
    await shot(page, "6-provider-down")
    fake.failure = None
    await page.locator("#new-qr").click()
    await page.locator("#qr-image").wait_for(state="visible")
    await until(page, "document.getElementById('status').textContent === 'Menunggu pembayaran…'")
    await context.close()


async def watch_behind_two_buyers(
        browser: Any, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]],
        *, rate_per_minute: int, locale: str) -> tuple[Any, Any]:
    """A provider capped at `rate_per_minute`: a first buyer takes this moment, a second
    waits for the next, and then a page (from the same address) opens the watch page."""
    settings = make_settings(tmp_path,
                             GATEWAY_PROVIDER_RATE_PER_MINUTE=str(rate_per_minute))
    server = await aiohttp_server(create_app(settings))
    site = str(server.make_url("/")).rstrip("/")
    context = await browser.new_context(locale=locale)
    for user_id, status in (("first", 201), ("second", 202)):
        ahead = await context.request.post(f"{site}/api/generate-qris",
                                           data={"streamId": "demo", "userId": user_id},
                                           headers={"X-Api-Key": API_KEY})
        assert ahead.status == status
    page = await context.new_page()
    await page.goto(f"{site}/watch/demo")
    return context, page


async def test_a_buyer_in_line_sees_the_place_then_the_qr(
        browser: Any, tmp_path: Path,
        aiohttp_server: Callable[..., Awaitable[TestServer]]) -> None:
    """One provider call a second: a first buyer takes this one and a second waits for
    the next, so the page's buyer waits in line, sees their place and the wait, and the
    QR appears by itself."""
    context, page = await watch_behind_two_buyers(browser, tmp_path, aiohttp_server,
                                                  rate_per_minute=60, locale="id-ID")
    await until(page, "/^Anda di antrean nomor [12] /"
                      ".test(document.getElementById('qr-loading').textContent)")
    await shot(page, "queue-place")
    qr = page.locator("#qr-image")
    await qr.wait_for(state="visible", timeout=10_000)
    await until(page, "document.getElementById('status').textContent === 'Menunggu pembayaran…'")
    assert await page.locator("#scan-instructions").is_visible()  # a code to scan now
    await context.close()


async def test_a_long_wait_in_line_counts_down_between_the_lines_updates(
        browser: Any, tmp_path: Path,
        aiohttp_server: Callable[..., Awaitable[TestServer]]) -> None:
    """One provider call a minute, two buyers ahead from the same address: a wait of
    at least two minutes (buyers from other addresses may still go ahead), which the
    line says again only every ~6 s; the page counts it down by itself in between."""
    context, page = await watch_behind_two_buyers(browser, tmp_path, aiohttp_server,
                                                  rate_per_minute=1, locale="en-US")
    seconds_left = ("Number(/at least (\\d+) s/.exec("
                    "document.getElementById('qr-loading').textContent)?.[1])")
    await until(page, f"{seconds_left} > 100")
    told = await page.evaluate(seconds_left)
    said = await page.locator("#qr-loading").text_content()
    assert said.startswith("You are number 2 in line") and "others on your network" in said
    # The status line says the place; with no code yet, nothing says to scan or save one.
    assert await page.locator("#status").text_content() == "In line: number 2"
    assert await page.locator("#scan-instructions").is_hidden()
    assert await page.locator("#save-hint").is_hidden()
    await until(page, f"{seconds_left} < {told}", timeout_s=4)
    await context.close()
