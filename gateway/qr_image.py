"""QR images rendered here with qrcode + Pillow (never a third-party image API: the
payload would leak, and the page would depend on someone else's uptime).

Rendering takes a few milliseconds of CPU, so it runs in a worker thread; results are
cached per session, and concurrent requests for the same session share one render.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M


def _code_image(payload: str, box_size_px: int) -> Image.Image:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size_px, border=4)
    code.add_data(payload)
    code.make(fit=True)
    image: Image.Image = code.make_image(fill_color="black", back_color="white").get_image()
    return image.convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render_png(payload: str) -> bytes:
    return _png(_code_image(payload, 8))


@dataclass(frozen=True, slots=True)
class CardText:
    """What the saved QR card says besides the code, already in the viewer's language."""

    amount: str  # "Rp 25.000"
    merchant_name: str
    nmid: str  # "NMID: ID1026000000001"
    pay_before: str  # "Bayar sebelum Sen, 7 Des 2026 09.12 WIB"
    title: str  # the stream
    tagline: str  # the standard's name under the QRIS mark


CARD_WIDTH_PX = 640
_MARGIN_PX = 40
_INK = (0, 0, 0)
_MUTED = (70, 70, 70)
# The QRIS mark's red (the wordmark's accent on the official sticker).
_QRIS_RED = (227, 30, 36)


def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's own bundled font: no system font needed wherever the service runs.
    return ImageFont.load_default(size=size_px)


def _centred(draw: ImageDraw.ImageDraw, y_px: int, text: str, size_px: int,
             fill: tuple[int, int, int] = _INK, bold: bool = False) -> int:
    """Draw one centred line (shrunk to fit the card); returns the y below it."""
    while True:
        font = _font(size_px)
        left, top, right, bottom = (round(edge) for edge in draw.textbbox(
            (0, 0), text, font=font, stroke_width=1 if bold else 0))
        if right - left <= CARD_WIDTH_PX - 2 * _MARGIN_PX or size_px <= 12:
            break
        size_px -= 2
    x_px = (CARD_WIDTH_PX - (right - left)) // 2 - left
    draw.text((x_px, y_px - top), text, font=font, fill=fill,
              stroke_width=1 if bold else 0, stroke_fill=fill)
    return y_px + (bottom - top)


def render_card_png(payload: str, text: CardText) -> bytes:
    """The QR as a payer saves it ("Simpan QR") to pick from a wallet's gallery: the
    QRIS mark (a drawn wordmark: no logo file is fetched from anywhere), merchant name
    and NMID above the code, as on a QRIS sticker, and the amount and the time it can be
    paid until below it. The code keeps its quiet zone, so wallets still read it."""
    code = _code_image(payload, 9)
    if code.width > CARD_WIDTH_PX - 2 * _MARGIN_PX:
        code = code.resize((CARD_WIDTH_PX - 2 * _MARGIN_PX,) * 2, Image.Resampling.NEAREST)
    card = Image.new("RGB", (CARD_WIDTH_PX, 1200), "white")
    draw = ImageDraw.Draw(card)
    y_px = 32
    # The mark: "QRIS" in heavy black letters, the standard's name under it, a red rule.
    y_px = _centred(draw, y_px, "QRIS", 64, bold=True) + 10
    y_px = _centred(draw, y_px, text.tagline, 18, _MUTED) + 14
    draw.rectangle((_MARGIN_PX, y_px, CARD_WIDTH_PX - _MARGIN_PX, y_px + 4), fill=_QRIS_RED)
    y_px += 24
    y_px = _centred(draw, y_px, text.merchant_name, 30, bold=True) + 8
    y_px = _centred(draw, y_px, text.nmid, 22, _MUTED) + 6
    card.paste(code, ((CARD_WIDTH_PX - code.width) // 2, y_px))
    y_px += code.height + 6
    y_px = _centred(draw, y_px, text.amount, 48, bold=True) + 14
    y_px = _centred(draw, y_px, text.pay_before, 22) + 10
    y_px = _centred(draw, y_px, text.title, 20, _MUTED) + 32
    return _png(card.crop((0, 0, CARD_WIDTH_PX, y_px)))


class QrImages:
    def __init__(self, max_entries: int = 2048) -> None:
        self._max_entries = max_entries
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._rendering: dict[str, asyncio.Future[bytes]] = {}

    async def png(self, key: str, payload: str) -> bytes:
        return await self._once(key, lambda: render_png(payload))

    async def card_png(self, key: str, payload: str, text: CardText) -> bytes:
        """The saved card; `key` must name its language too (the text differs)."""
        return await self._once(key, lambda: render_card_png(payload, text))

    async def _once(self, key: str, render: Callable[[], bytes]) -> bytes:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        future = self._rendering.get(key)
        if future is None:
            future = asyncio.ensure_future(asyncio.to_thread(render))
            self._rendering[key] = future
            future.add_done_callback(lambda done: self._finish(key, done))
        # shield: one impatient client disconnecting must not cancel the shared render.
        return await asyncio.shield(future)

    def _finish(self, key: str, future: asyncio.Future[bytes]) -> None:
        self._rendering.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            self._cache[key] = future.result()
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
