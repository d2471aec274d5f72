"""GET /metrics: Prometheus exposition, for operators (the API key)."""

from __future__ import annotations

from aiohttp import web

from gateway.handlers.common import require_operator
from gateway.keys import METRICS
from gateway.metrics import CONTENT_TYPE


async def metrics(request: web.Request) -> web.Response:
    require_operator(request)
    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
