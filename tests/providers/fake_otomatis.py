"""A local otomatis.vip, as its public clients use it (no official docs exist; see
/work/notes/provider_research.md, "otomatis.vip"): generate, checkstatus/v2, its
unsigned JSON payment callback and its withdrawal callback. trx_ids look like its own
("03C..."); amounts in the payload are written "1000.00".

- `POST /api/generate {username, amount, uuid, expire, custom_ref}`: Rp10,000 to
  Rp10,000,000 (its Postman collection's limits);
- `POST /api/checkstatus/v2/{trx_id} {uuid, client, client_key}`: the merchant's uuid,
  the panel's client name and that client's secret; anything else is "not found", as
  public clients that sent the username there found out. Times here are UTC with `Z`;
- the callback carries our uuid as `merchant_id`, the username as `terminal_id`, and
  times without a zone (WIB), or in whichever form `time_form` says.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.providers import harness
from tests.providers.fake_midtrans import WIB

MIN_AMOUNT, MAX_AMOUNT = 10_000, 10_000_000
# The forms its times were seen in, by the name a test asks for.
TIME_FORMS: dict[str, Callable[[datetime], str]] = {
    "iso_wib": lambda t: t.astimezone(WIB).strftime("%Y-%m-%dT%H:%M:%S"),
    "iso_utc_ms": lambda t: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    + f"{t.microsecond // 1000:03d}Z",
    "space_wib": lambda t: t.astimezone(WIB).strftime("%Y-%m-%d %H:%M:%S"),
    "fraction_wib": lambda t: t.astimezone(WIB).strftime("%Y-%m-%dT%H:%M:%S.%f"),
}


class FakeOtomatis:
    def __init__(self, username: str, api_key: str, client: str, client_key: str,
                 clock: Callable[[], int]) -> None:
        self.username = username
        self.api_key = api_key
        self.client = client
        self.client_key = client_key
        self.clock = clock
        self.transactions: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, Any]] = []
        self.failure: str | None = None  # "timeout", "500", "garbage", "invalid_qris"
        self.delay_s = 5.0
        self.callback_time_form = "iso_wib"
        self.status_time_form = "iso_utc_ms"
        self.app = web.Application()
        self.app.router.add_post("/api/generate", self.generate)
        self.app.router.add_post("/api/checkstatus/v2/{trx_id}", self.checkstatus)

    async def _fail(self) -> web.Response | None:
        if self.failure == "timeout":
            await asyncio.sleep(self.delay_s)
        if self.failure in ("timeout", "500"):
            return web.Response(text="Internal Server Error", status=500)
        if self.failure == "garbage":
            return web.Response(text="<!doctype html><title>Cloudflare</title>", status=200)
        return None

    def _time(self, ms: int | None, form: str) -> str | None:
        if ms is None:
            return None
        return TIME_FORMS[form](datetime.fromtimestamp(ms / 1000, UTC))

    async def generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if body.get("uuid") != self.api_key or body.get("username") != self.username:
            return web.json_response({"status": False, "error": "Invalid credentials"})
        if (failed := await self._fail()) is not None:
            return failed
        if not MIN_AMOUNT <= body["amount"] <= MAX_AMOUNT:
            return web.json_response({"status": False,
                                      "error": "Minimal amount 10000, maksimal 10000000"})
        trx_id = "03C" + secrets.token_hex(8).upper()
        qr_string = harness.provider_qris("ID.MOTIONPAY.WWW", "936008210000000010",
                                          f"{body['amount']}.00", "TONTON LIVE")
        if self.failure == "invalid_qris":
            qr_string = harness.break_crc(qr_string)
        self.transactions[trx_id] = {
            "trx_id": trx_id, "amount": body["amount"], "custom_ref": body.get("custom_ref"),
            "status": "pending", "rrn": None, "created_ms": self.clock(), "finish_ms": None,
        }
        return web.json_response({"status": True, "data": qr_string, "trx_id": trx_id,
                                  "fee": 0, "expired_at": body["expire"]})

    async def checkstatus(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if (failed := await self._fail()) is not None:
            return failed
        transaction = self.transactions.get(request.match_info["trx_id"])
        if transaction is None or (body.get("uuid"), body.get("client"),
                                   body.get("client_key")) != (
                self.api_key, self.client, self.client_key):
            return web.json_response({"status": False, "error": "Transaction not found"})
        answer = {"amount": transaction["amount"], "merchant_id": self.api_key,
                  "trx_id": transaction["trx_id"], "status": transaction["status"],
                  "terminal_id": self.username, "custom_ref": transaction["custom_ref"],
                  "vendor": "MOTIONPAY",
                  "created_at": self._time(transaction["created_ms"], self.status_time_form),
                  "finish_at": self._time(transaction["finish_ms"], self.status_time_form)}
        if transaction["rrn"] is not None:
            answer["rrn"] = transaction["rrn"]
        return web.json_response(answer)

    def pay(self, trx_id: str, paid_rupiah: int | None = None) -> None:
        transaction = self.transactions[trx_id]
        transaction.update(status="success", rrn=secrets.token_hex(6),
                           amount=paid_rupiah or transaction["amount"],
                           finish_ms=self.clock())

    def callback(self, trx_id: str, **overrides: Any) -> tuple[dict[str, str], bytes]:
        """The unsigned callback it POSTs (the transaction as it stands, or a claim)."""
        transaction = self.transactions[trx_id]
        body = {"amount": transaction["amount"], "terminal_id": self.username,
                "merchant_id": self.api_key, "trx_id": trx_id, "rrn": transaction["rrn"],
                "custom_ref": transaction["custom_ref"], "vendor": "NOBU",
                "status": transaction["status"],
                "created_at": self._time(transaction["created_ms"], self.callback_time_form),
                "finish_at": self._time(transaction["finish_ms"], self.callback_time_form),
                **overrides}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()

    def withdrawal_callback(self, amount: int, **overrides: Any
                            ) -> tuple[dict[str, str], bytes]:
        """A withdrawal from the merchant's balance, reported at the same URL."""
        body = {"amount": amount, "partner_ref_no": "WD" + secrets.token_hex(8).upper(),
                "status": "success",
                "transaction_date": self._time(self.clock(), "iso_utc_ms"),
                "merchant_id": self.api_key, **overrides}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
