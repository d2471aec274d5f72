"""A local otomatis.vip, as its public clients use it: generate, checkstatus/v2, and
its unsigned JSON callback. trx_ids look like its own ("03C..."); amounts in the
payload are written "1000.00"."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.providers import harness
from tests.providers.fake_midtrans import wib


class FakeOtomatis:
    def __init__(self, username: str, api_key: str, clock: Callable[[], int]) -> None:
        self.username = username
        self.api_key = api_key
        self.clock = clock
        self.transactions: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, Any]] = []
        self.failure: str | None = None  # "timeout", "500", "garbage", "invalid_qris"
        self.delay_s = 5.0
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

    async def generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if body.get("uuid") != self.api_key or body.get("username") != self.username:
            return web.json_response({"status": False, "error": "Invalid credentials"})
        if (failed := await self._fail()) is not None:
            return failed
        trx_id = "03C" + secrets.token_hex(8).upper()
        qr_string = harness.provider_qris("ID.MOTIONPAY.WWW", "936008210000000010",
                                          f"{body['amount']}.00", "TONTON LIVE")
        if self.failure == "invalid_qris":
            qr_string = harness.break_crc(qr_string)
        self.transactions[trx_id] = {
            "trx_id": trx_id, "amount": body["amount"], "custom_ref": body.get("custom_ref"),
            "status": "pending", "rrn": None, "created_at": wib(self.clock()),
            "finish_at": None,
        }
        return web.json_response({"status": True, "data": qr_string, "trx_id": trx_id,
                                  "fee": 0, "expired_at": body["expire"]})

    async def checkstatus(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if body.get("uuid") != self.api_key:
            return web.json_response({"status": False, "error": "Invalid credentials"})
        if (failed := await self._fail()) is not None:
            return failed
        transaction = self.transactions.get(request.match_info["trx_id"])
        if transaction is None:
            return web.json_response({"status": False, "error": "Transaksi tidak ditemukan"})
        return web.json_response(transaction)

    def pay(self, trx_id: str, paid_rupiah: int | None = None) -> None:
        transaction = self.transactions[trx_id]
        transaction.update(status="success", rrn=secrets.token_hex(6),
                           amount=paid_rupiah or transaction["amount"],
                           finish_at=wib(self.clock()))

    def callback(self, trx_id: str, **overrides: Any) -> tuple[dict[str, str], bytes]:
        """The unsigned callback it POSTs (the transaction as it stands, or a claim)."""
        transaction = self.transactions[trx_id]
        body = {"amount": transaction["amount"], "terminal_id": "T001",
                "merchant_id": "M001", "trx_id": trx_id, "rrn": transaction["rrn"],
                "custom_ref": transaction["custom_ref"], "vendor": "MOTIONPAY",
                "status": transaction["status"], "created_at": transaction["created_at"],
                "finish_at": transaction["finish_at"], **overrides}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
