"""GET /healthz: liveness for the process supervisor and load balancer."""

from __future__ import annotations

from aiohttp import web

from gateway.handlers.common import ok


async def healthz(request: web.Request) -> web.Response:
    return ok({"status": "ok"})
