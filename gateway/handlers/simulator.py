"""POST /simulator/pay/{trxId}: the simulator plays the provider and the payer's bank.

It delivers its signed notification to our own `POST /api/payment-callback` over real
HTTP, so the demo and the tests exercise exactly the path a real provider takes.
Only registered when GATEWAY_PROVIDER=simulator.
"""

from __future__ import annotations

from typing import Annotated

import aiohttp
import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.catalog import MAX_PRICE_RUPIAH
from gateway.errors import ProviderUnavailable, SimulatorDisabled
from gateway.handlers.common import current_viewer, ok, path_value, read_json
from gateway.identity import session_owner
from gateway.ids import TRX_ID
from gateway.keys import HTTP_CLIENT, PROVIDER, SESSIONS
from gateway.providers.simulator import SimulatorProvider


class SimulatedPayment(msgspec.Struct, rename="camel"):
    # Pay a different amount than asked, to see how a mismatch is handled.
    amount: Annotated[int, Meta(gt=0, le=MAX_PRICE_RUPIAH)] | None = None


async def pay(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    if not isinstance(provider, SimulatorProvider):
        raise SimulatorDisabled()
    trx_id = path_value(request, "trx_id", TRX_ID)
    body = await read_json(request, SimulatedPayment, allow_empty=True)
    owner = session_owner(current_viewer(request), None)
    session = await request.app[SESSIONS].owned_session(owner, trx_id=trx_id)
    headers, raw_body = provider.pay(session.trx_id, body.amount or session.amount)
    callback_url = _own_url(request, str(request.app.router["payment-callback"].url_for()))
    try:
        async with request.app[HTTP_CLIENT].post(
            callback_url, data=raw_body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            answer = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise ProviderUnavailable() from None
    data = answer.get("data") or {}
    return ok({
        "trxId": session.trx_id,
        "sessionId": session.session_id,
        "callbackStatus": status,
        "applied": data.get("applied", False),
        "reason": data.get("reason", answer.get("code")),
    })


def _own_url(request: web.Request, path: str) -> str:
    """This server's own address, as the socket that accepted this request sees it:
    reachable from here whatever Host header or proxy the viewer came through."""
    assert request.transport is not None
    host, port = request.transport.get_extra_info("sockname")[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"
