"""GET /healthz: liveness, for the process supervisor (the process answers).
GET /readyz: readiness, for the load balancer (and its store answers too)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import StoreUnavailable
from gateway.handlers.common import ok
from gateway.keys import SETTINGS, STORE, UNTRUSTED_FORWARDING

READY_TIMEOUT_S = 1.0  # a load balancer checks every few seconds: answer well inside


async def healthz(request: web.Request) -> web.Response:
    worker = request.app[SETTINGS].worker_index
    # Which of GATEWAY_WORKERS answered (a supervisor restarts one that stops answering).
    return ok({"status": "ok"} if worker is None else {"status": "ok", "worker": worker})


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[STORE].ping(), READY_TIMEOUT_S)
    except Exception:  # timeout or connection error alike: send traffic elsewhere
        raise StoreUnavailable() from None
    ready: dict[str, object] = {"status": "ready"}
    forwarding = request.app[UNTRUSTED_FORWARDING]
    if forwarding.peer is not None:
        # Ready all the same: a misconfiguration to fix, not a reason to take traffic away.
        ready["warnings"] = [forwarding.hint]
    return ok(ready)
