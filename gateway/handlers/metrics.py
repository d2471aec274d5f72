"""GET /metrics: Prometheus exposition, for operators (the API key)."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import Unauthenticated
from gateway.handlers.common import credential_header
from gateway.keys import IDENTITY, METRICS
from gateway.metrics import CONTENT_TYPE


async def metrics(request: web.Request) -> web.Response:
    if not request.app[IDENTITY].is_operator(
            api_key=credential_header(request, "X-Api-Key"),
            authorization=credential_header(request, "Authorization")):
        raise Unauthenticated()
    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
