"""The QR image is drawn here and scans back to exactly the session's payload."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from gateway import qr_image
from gateway.handlers.qr import card_text
from gateway.model import PaymentSession, SessionStatus
from gateway.qr_image import QrImages, render_png
from gateway.qris import MerchantProfile, build_dynamic
from tests.conftest import ViewerClient


def decode(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1 and results[0].format == zxingcpp.BarcodeFormat.QRCode
    return results[0].text


async def test_the_served_png_decodes_to_the_exact_payload(viewer: ViewerClient) -> None:
    qr = await viewer.generate_qris("konser-malam")
    async with viewer.http.get(qr["qrCode"]) as response:
        png = await response.read()
    assert decode(png) == qr["qrString"]


def test_long_payloads_still_scan() -> None:
    payload = "000201010212" + "62" + "99" + "0" * 99 + "6304ABCD"
    assert decode(render_png(payload)) == payload


async def test_concurrent_requests_share_one_render_and_the_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[str] = []

    def counting(payload: str) -> bytes:
        rendered.append(payload)
        return render_png(payload)

    monkeypatch.setattr(qr_image, "render_png", counting)
    images = QrImages()
    pngs = await asyncio.gather(*(images.png("s1", "HELLO") for _ in range(10)))
    again = await images.png("s1", "HELLO")
    assert rendered == ["HELLO"]
    assert len(set(pngs)) == 1 and again == pngs[0]
    assert decode(again) == "HELLO"


async def test_the_saved_card_scans_and_says_amount_merchant_and_deadline(
        viewer: ViewerClient) -> None:
    """ "Simpan QR" (issue 27): a card a wallet still reads from the gallery, carrying
    the QRIS mark, merchant, NMID, amount and when it stops being payable."""
    qr = await viewer.generate_qris("konser-malam")
    assert qr["qrCard"] == f"/api/qr/{qr['sessionId']}/card.png"
    for language in ("id", "en"):
        async with viewer.http.get(qr["qrCard"],
                                   headers={"Accept-Language": language}) as response:
            assert response.status == 200
            assert response.content_type == "image/png"
            assert response.headers["Vary"] == "Accept-Language"
            assert response.headers["Cache-Control"].startswith("private, max-age=")
            png = await response.read()
        card = Image.open(io.BytesIO(png))
        assert card.width == qr_image.CARD_WIDTH_PX and card.height > card.width
        assert decode(png) == qr["qrString"]


async def test_someone_elses_card_is_not_served(make_viewer: Any) -> None:
    owner, stranger = await make_viewer(), await make_viewer()
    qr = await owner.generate_qris("demo")
    async with stranger.http.get(qr["qrCard"]) as response:
        assert response.status in (403, 404)


def test_the_card_text_comes_from_the_payload_in_the_viewers_language() -> None:
    session = PaymentSession(
        session_id="s1", user_id="u1", stream_id="konser", provider="simulator",
        trx_id="T1", amount=25000, fee=0, qr_string=build_dynamic(
            MerchantProfile(), 25000, "T1"),
        status=SessionStatus.PENDING, created_at_ms=0, paid_at_ms=None,
        # Mon 7 Dec 2026 02:00 UTC = 09.00 WIB
        expires_at_ms=1796608800000)
    indonesian = card_text(session, None, "id")
    assert indonesian.amount == "Rp 25.000"
    assert indonesian.merchant_name == "STREAM PAYGATE"
    assert indonesian.nmid == "NMID: ID1026000000001"
    assert indonesian.pay_before == "Bayar sebelum Sen, 7 Des 2026 09.00 WIB"
    assert indonesian.title == "konser"  # a stream since removed: its id
    assert card_text(session, None, "en").pay_before == "Pay before Mon, 7 Dec 2026 09:00 WIB"
