"""What the local fakes of providers share: QRIS payloads shaped like each provider's,
the failure knobs, and a callback receiver that hands the raw request to an adapter."""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import qris
from gateway.clock import Clock
from gateway.errors import InvalidRequest, NotificationRejected
from gateway.providers.base import Provider
from gateway.sessions import Notification

# Failure knobs a fake understands on its create call:
TIMEOUT = "timeout"  # never answers (until released)
SERVER_ERROR = "500"
GARBAGE = "garbage"  # 200 with an HTML page
INVALID_QRIS = "invalid_qris"  # payload whose CRC does not match
STATIC_QRIS = "static_qris"  # point of initiation 11
WRONG_AMOUNT = "wrong_amount"  # payload asks for one rupiah more
FAILURES = (TIMEOUT, SERVER_ERROR, GARBAGE, INVALID_QRIS, STATIC_QRIS, WRONG_AMOUNT)

_LABEL_ALPHABET = string.ascii_letters + string.digits


def provider_qris(guid: str, pan: str, amount_text: str, merchant_name: str,
                  static: bool = False) -> str:
    """A payload laid out as real acquirers do: merchant account, national repository,
    amount, merchant, then a 25-character random label in 62.05 (which is not the
    provider's transaction id: those are longer than 62.05 allows)."""
    body = qris.encode_tlv([
        ("00", "01"),
        ("01", qris.POINT_OF_INITIATION_STATIC if static else qris.POINT_OF_INITIATION_DYNAMIC),
        ("26", qris.encode_tlv([("00", guid), ("01", pan), ("02", "M" + secrets.token_hex(7)),
                                ("03", "UME")])),
        ("51", qris.encode_tlv([("00", qris.QRIS_NATIONAL_GUID), ("02", "ID2025000000001"),
                                ("03", "UME")])),
        ("52", "4899"),
        ("53", qris.CURRENCY_IDR),
        ("54", amount_text),
        ("58", "ID"),
        ("59", merchant_name),
        ("60", "JAKARTA"),
        ("61", "10110"),
        ("62", qris.encode_tlv([("05", "".join(secrets.choice(_LABEL_ALPHABET)
                                               for _ in range(25)))])),
    ]) + "6304"
    return body + qris.crc_field(body)


def break_crc(payload: str) -> str:
    wrong = "0000" if not payload.endswith("0000") else "FFFF"
    return payload[:-4] + wrong


class Hang:
    """A request that never gets its answer, until the test ends and releases it."""

    def __init__(self) -> None:
        self._released = asyncio.Event()

    async def wait(self) -> None:
        await asyncio.wait_for(self._released.wait(), timeout=60)

    def release(self) -> None:
        self._released.set()


class FakeApi:
    """What every fake provider has: its app, where it listens, and its knobs."""

    def __init__(self) -> None:
        self.failure: str | None = None  # one of FAILURES (or the fake's own), on create
        self.status_failure: str | None = None  # SERVER_ERROR breaks the status calls
        self.hang = Hang()
        self.base_url = ""  # set once its server listens

    def app(self) -> web.Application:
        raise NotImplementedError


@dataclass
class CallbackReceiver:
    """Our side of the callback, minus the service: the raw bytes go to the adapter's
    `authenticate`, as the service's callback handler does; an authentic notification is
    answered `{"success": true}` and kept (one we cannot read as well, as unreadable)."""

    provider: Provider
    clock: Clock
    notifications: list[Notification] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/payment-callback", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        raw_body = await request.read()
        try:
            note = await self.provider.authenticate(request.headers, raw_body, self.clock())
        except NotificationRejected as rejected:
            self.rejections.append(str(rejected.params["reason"]))
            return web.json_response({"success": False, "code": rejected.code}, status=401)
        except InvalidRequest as invalid:  # otomatis' hints, before its status API is asked
            self.rejections.append(str(invalid.params["detail"]))
            return web.json_response({"success": False, "code": invalid.code}, status=400)
        self.notifications.append(note)
        return web.json_response({"success": True, "data": {"eventId": note.event_id}})


Receiver = tuple[CallbackReceiver, str]  # and the URL it listens at
ServeReceiver = Callable[[Provider], Awaitable[Receiver]]
ServeFake = Callable[[FakeApi], Awaitable[None]]


async def post_json(http: aiohttp.ClientSession, url: str, raw_body: bytes,
                    headers: dict[str, str]) -> tuple[int, Any]:
    async with http.post(url, data=raw_body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The fields of each `log_event` line of this event, in order."""
    return [getattr(record, "event_fields", {}) for record in caplog.records
            if record.getMessage() == event]
