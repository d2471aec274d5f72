"""A local Midtrans Core API, from its public docs: charge (`payment_type: qris`),
status, expire, and HTTP notifications signed with SHA-512(order_id + status_code +
gross_amount + server key). Amounts are strings with ".00", times WIB."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from tests.providers import harness

WIB = timezone(timedelta(hours=7))


def wib(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, WIB).strftime("%Y-%m-%d %H:%M:%S")


class FakeMidtrans:
    def __init__(self, server_key: str, clock: Callable[[], int]) -> None:
        self.server_key = server_key
        self.clock = clock
        self.transactions: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        # What the next calls do instead of answering: "timeout", "500", "garbage",
        # "invalid_qris" (charge only), or None.
        self.failure: str | None = None
        self.delay_s = 5.0
        self.status_delay_s = 0.0  # how long each status answer takes
        self.in_flight = self.most_in_flight = 0  # status calls being answered at once
        self.app = web.Application()
        self.app.router.add_post("/v2/charge", self.charge)
        self.app.router.add_get("/v2/{order_id}/status", self.status)
        self.app.router.add_post("/v2/{order_id}/expire", self.expire)

    def _authorised(self, request: web.Request) -> bool:
        token = base64.b64encode(f"{self.server_key}:".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {token}"

    async def _fail(self) -> web.Response | None:
        if self.failure == "timeout":
            await asyncio.sleep(self.delay_s)
        if self.failure in ("timeout", "500"):
            return web.json_response({"status_code": "500"}, status=500)
        if self.failure == "garbage":
            return web.Response(text="<html>upstream error</html>", status=200)
        return None

    async def charge(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", request.path, dict(request.headers), body))
        if not self._authorised(request):
            return web.json_response({"status_code": "401",
                                      "status_message": "Unknown Merchant server_key/id"})
        if (failed := await self._fail()) is not None:
            return failed
        order_id = body["transaction_details"]["order_id"]
        gross = int(body["transaction_details"]["gross_amount"])
        transaction_id = str(uuid.uuid4())
        qr_string = harness.provider_qris("COM.GO-JEK.WWW", "936009140000000014",
                                          f"{gross}.00", "TONTON LIVE")
        if self.failure == "invalid_qris":
            qr_string = harness.break_crc(qr_string)
        transaction = {
            "status_code": "201", "status_message": "QRIS transaction is created",
            "transaction_id": transaction_id, "order_id": order_id,
            "merchant_id": "G000000001", "gross_amount": f"{gross}.00", "currency": "IDR",
            "payment_type": "qris", "transaction_time": wib(self.clock()),
            "transaction_status": "pending", "fraud_status": "accept",
            "actions": [{"name": "generate-qr-code", "method": "GET",
                         "url": f"/v2/qris/{transaction_id}/qr-code"}],
            "qr_string": qr_string, "acquirer": "gopay",
        }
        self.transactions[order_id] = dict(transaction)
        return web.json_response(transaction)

    async def status(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.status_delay_s:
                await asyncio.sleep(self.status_delay_s)
            return await self._status(request)
        finally:
            self.in_flight -= 1

    async def _status(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path, dict(request.headers), None))
        if not self._authorised(request):
            return web.json_response({"status_code": "401"})
        if (failed := await self._fail()) is not None:
            return failed
        transaction = self.transactions.get(request.match_info["order_id"])
        if transaction is None:
            return web.json_response({"status_code": "404",
                                      "status_message": "Transaction doesn't exist."})
        answer = {key: value for key, value in transaction.items()
                  if key not in ("qr_string", "actions")}
        answer["status_code"] = "200" if answer["transaction_status"] == "settlement" \
            else "201" if answer["transaction_status"] == "pending" else "407"
        answer["signature_key"] = self.signature(answer)
        return web.json_response(answer)

    async def expire(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path, dict(request.headers), None))
        if (failed := await self._fail()) is not None:
            return failed
        transaction = self.transactions.get(request.match_info["order_id"])
        if transaction is None:
            return web.json_response({"status_code": "404"})
        if transaction["transaction_status"] != "pending":
            return web.json_response({"status_code": "412",
                                      "status_message": "Transaction status cannot be updated."})
        transaction["transaction_status"] = "expire"
        return web.json_response({"status_code": "407", "status_message":
                                  "Success, transaction is expired",
                                  "order_id": transaction["order_id"],
                                  "transaction_status": "expire"})

    def signature(self, body: dict[str, Any], server_key: str | None = None) -> str:
        text = (body["order_id"] + body["status_code"] + body["gross_amount"]
                + (server_key or self.server_key))
        return hashlib.sha512(text.encode()).hexdigest()

    def settle(self, order_id: str, *, paid_rupiah: int | None = None,
               imposed_fee: int = 0) -> None:
        """The payer pays: `paid_rupiah` instead of the asked amount, or with a fee
        imposed on top (Automatic Fee Imposition)."""
        transaction = self.transactions[order_id]
        original = int(float(transaction["gross_amount"]))
        gross = (paid_rupiah or original) + imposed_fee
        transaction.update(transaction_status="settlement", status_code="200",
                           settlement_time=wib(self.clock()), gross_amount=f"{gross}.00")
        if imposed_fee:
            transaction["metadata"] = {"extra_info": {"gross_amount_info": {
                "original_amount": str(original), "gross_amount": str(gross),
                "customer_imposed_payment_fee": str(imposed_fee)}}}

    def notification(self, order_id: str, *, server_key: str | None = None,
                     ) -> tuple[dict[str, str], bytes]:
        """The HTTP notification Midtrans would POST now for the transaction's state."""
        transaction = self.transactions[order_id]
        status = transaction["transaction_status"]
        body = {
            "transaction_type": "on-us", "transaction_time": transaction["transaction_time"],
            "transaction_status": status, "transaction_id": transaction["transaction_id"],
            "status_message": "midtrans payment notification",
            "status_code": {"settlement": "200", "pending": "201"}.get(status, "202"),
            "settlement_time": transaction.get("settlement_time"),
            "payment_type": "qris", "order_id": order_id, "merchant_id": "G000000001",
            "issuer": "gopay", "gross_amount": transaction["gross_amount"],
            "fraud_status": "accept", "currency": "IDR", "acquirer": "gopay",
        }
        if "metadata" in transaction:
            body["metadata"] = transaction["metadata"]
        if body["settlement_time"] is None:
            del body["settlement_time"]
        body["signature_key"] = self.signature(body, server_key)
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
