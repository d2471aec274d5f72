"""The QR image is drawn here and scans back to exactly the session's payload."""

from __future__ import annotations

import asyncio
import io

import pytest
import zxingcpp
from PIL import Image

from gateway import qr_image
from gateway.qr_image import QrImages, render_png
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
