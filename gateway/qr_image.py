"""QR images rendered here with qrcode + Pillow (never a third-party image API: the
payload would leak, and the page would depend on someone else's uptime).

Rendering takes a few milliseconds of CPU, so it runs in a worker thread; results are
cached per session, and concurrent requests for the same session share one render.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict

import qrcode
from qrcode.constants import ERROR_CORRECT_M


def render_png(payload: str) -> bytes:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(payload)
    code.make(fit=True)
    image = code.make_image(fill_color="black", back_color="white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class QrImages:
    def __init__(self, max_entries: int = 2048) -> None:
        self._max_entries = max_entries
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._rendering: dict[str, asyncio.Future[bytes]] = {}

    async def png(self, key: str, payload: str) -> bytes:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        future = self._rendering.get(key)
        if future is None:
            future = asyncio.ensure_future(asyncio.to_thread(render_png, payload))
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
