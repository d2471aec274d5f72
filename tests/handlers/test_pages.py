"""The pages as HTML: what each viewer is sent, in which language, with which headers."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from gateway.i18n import date_time_text, duration_text, rupiah, time_until_text
from gateway.settings import PACKAGE_DIR, Settings
from tests.conftest import API_KEY, AppFactory, ViewerClient, make_settings


async def html(viewer: ViewerClient, path: str, **headers: str) -> tuple[int, dict[str, str],
                                                                          str]:
    async with viewer.http.get(path, headers={"Accept": "text/html", **headers}) as response:
        return response.status, dict(response.headers), await response.text()


def config_of(page: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="watch-config">(.*?)</script>', page)
    assert match is not None
    return json.loads(match.group(1))


async def test_the_list_shows_every_stream_with_its_price(viewer: ViewerClient) -> None:
    status, headers, page = await html(viewer, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<html lang="id">' in page
    assert "Demo Live: Pola Uji" in page and "Konser Malam (demo)" in page
    assert "Rp 1.000" in page and "Rp 25.000" in page and "untuk 2 jam" in page
    assert 'href="/watch/demo"' in page and 'href="/watch/konser-malam"' in page
    assert "origin" not in page and "file:" not in page


async def test_a_new_viewer_gets_the_pay_panel(viewer: ViewerClient) -> None:
    status, headers, page = await html(viewer, "/watch/konser-malam")
    assert status == 200
    assert re.search(r'<section id="player-panel"[^>]*hidden', page)
    assert not re.search(r'<section id="pay-panel"[^>]*hidden', page)
    assert 'alt="Kode QRIS untuk membayar Rp 25.000"' in page
    assert 'role="status" aria-live="polite"' in page
    assert '<button type="button" id="simulate"' in page
    config = config_of(page)
    assert config["access"] is None and config["streamId"] == "konser-malam"
    assert "viewer=" in headers["Set-Cookie"]
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp  # no other site may frame the pay page
    assert headers["Referrer-Policy"] == "same-origin"
    assert not re.search(r"[0-9]", headers["Server"])  # no versions for an attacker


async def test_operators_who_embed_the_page_can_allow_their_site(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    embedding = make_settings(tmp_path, GATEWAY_FRAME_ANCESTORS="https://partner.example",
                              GATEWAY_STORE=settings.store_url,
                              GATEWAY_REDIS_KEY_PREFIX=settings.redis_key_prefix)
    viewer = await make_viewer(embedding)
    _, headers, _ = await html(viewer, "/watch/demo")
    assert headers["Content-Security-Policy"].endswith("frame-ancestors https://partner.example")


async def test_a_viewer_with_access_gets_the_player_at_once(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"])
    async with viewer.http.get("/watch/demo") as response:
        page = await response.text()
        gate = response.cookies["gate"]
    assert not re.search(r'<section id="player-panel"[^>]*hidden', page)
    assert re.search(r'<section id="pay-panel"[^>]*hidden', page)
    access = config_of(page)["access"]
    assert isinstance(access, dict)
    assert access["sessionId"] == qr["sessionId"]
    assert access["playbackUrl"] == "/hls/demo/index.m3u8"
    assert gate["path"] == "/hls/demo/" and gate["httponly"]


async def test_a_revoked_viewer_is_sent_why_and_no_pay_panel(viewer: ViewerClient) -> None:
    """Issue 27: the page starts from what ended the ticket, so its script shows that
    and never asks for a new QR."""
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"])
    await viewer.call("POST", f"/api/sessions/{qr['sessionId']}/revoke",
                      headers={"X-Api-Key": API_KEY}, expect=200)
    _, _, page = await html(viewer, "/watch/demo")
    assert re.search(r'<section id="pay-panel"[^>]*hidden', page)
    assert re.search(r'<section id="player-panel"[^>]*hidden', page)
    config = config_of(page)
    ended = config["ended"]
    assert isinstance(ended, dict)
    assert (ended["endedReason"], ended["endedSessionId"]) == ("revoked", qr["sessionId"])
    assert config["access"] is None and config["supportUrl"] is None


async def test_english_when_the_browser_prefers_it(viewer: ViewerClient) -> None:
    _, _, page = await html(viewer, "/watch/demo",
                                  **{"Accept-Language": "en-GB,en;q=0.9,id;q=0.4"})
    assert '<html lang="en">' in page and "Pay to watch" in page
    assert 'alt="QRIS code to pay Rp 1.000"' in page
    assert config_of(page)["strings"]["status_waiting"] == "Waiting for payment…"  # type: ignore[index]


async def test_unknown_pages_are_html_for_browsers_and_json_for_programs(
        viewer: ViewerClient) -> None:
    status, headers, page = await html(viewer, "/watch/nope")
    assert status == 404 and "Halaman tidak ditemukan" in page and "Stream tidak ditemukan" in page
    assert headers["Content-Type"].startswith("text/html")
    body = await viewer.call("GET", "/watch/nope", expect=404)  # no Accept: text/html
    assert body["code"] == "unknown_stream"
    status, _, page = await html(viewer, "/api/nope")
    assert status == 404 and page.startswith("{")  # the API always answers JSON


def test_prices_and_durations_read_the_indonesian_way() -> None:
    assert rupiah(1000) == "Rp 1.000" and rupiah(1250000) == "Rp 1.250.000"
    assert rupiah(500) == "Rp 500"
    assert duration_text(7200, "id") == "2 jam"
    assert duration_text(5400, "id") == "90 menit"
    assert duration_text(8, "en") == "8 seconds"
    assert date_time_text(1_796_126_400_000, "id") == "Sel, 1 Des 2026 19.00 WIB"
    assert date_time_text(1_796_126_400_000, "en") == "Tue, 1 Dec 2026 19:00 WIB"
    assert time_until_text((26 * 60 + 5) * 60_000, "id") == "1 hari 2 jam"
    assert time_until_text(65 * 60_000 + 1, "en") == "1 hour 6 minutes"


def test_both_languages_have_every_text() -> None:
    locales = {path.stem: tomllib.loads(path.read_text())
               for path in (PACKAGE_DIR / "locales").glob("*.toml")}
    assert set(locales) == {"id", "en"}
    for section in locales["id"]:
        assert set(locales["id"][section]) == set(locales["en"][section]), section


def test_page_text_lives_in_templates_and_locales_not_in_code() -> None:
    script = (Path(__file__).parents[2] / "static" / "watch.js").read_text()
    # The script shows only strings it was given (config.strings, t.*), no literals.
    assert set(re.findall(r'textContent = "([^"]+)"', script)) <= {"--:--"}
