"""A local Midtrans Core API, from its public docs: charge (`payment_type: qris`, its
`qris.acquirer`), status, expire, direct refund, and HTTP notifications signed with
SHA-512(order_id + status_code + gross_amount + server key). Amounts are strings with
".00", times WIB.

Direct refund (`POST /v2/{order_id}/refund/online/direct {refund_key, amount,
reason}`), per docs.midtrans.com and its SDKs' tests: every answer but a bad key's is
HTTP 200 with the real code in the body's `status_code`: 200 refunded (`refund` or
`partial_refund`, `refund_amount` cumulative, `refund_chargeback_id` an integer), 202
denied by the bank (nothing refunded; the same key may be tried again), 412 not
refundable (not settled), 414 more than remains, 404 no such order. A refund_key whose
refund went through is answered, as its sources disagree, either 406 "Duplicate refund
ID" (`repeated_refund_key = "duplicate"`, the default) or the same success again
(`"idempotent"`). GET status then lists `refunds[]` with each refund_key, and
`refund_notification` gives the `refund`/`partial_refund` notification that follows
(with or without `refunds[]`: the docs show both).

Knobs: `failure` ("timeout", "500", "garbage", "invalid_qris") breaks every call;
`deny_refunds` makes the bank deny them; `refund_answer_lost` makes the refund but
never answers (until `delay_s`), as a timeout on our side would look.
"""

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
ACQUIRERS = ("gopay", "airpay shopee")
# The body's status_code for each transaction_status: in a notification, and (where it
# differs: an expired QRIS) in GET status's answer.
NOTIFIED_CODES = {"settlement": "200", "capture": "200", "cancel": "200", "refund": "200",
                  "partial_refund": "200", "pending": "201", "expire": "202", "deny": "202"}
STATUS_CODES = {**NOTIFIED_CODES, "expire": "407"}


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
        self.repeated_refund_key = "duplicate"  # or "idempotent"
        self.deny_refunds = False
        self.refund_answer_lost = False
        self._chargeback_ids = 0
        self.base_url = ""  # set once its server listens
        self.app = web.Application()
        self.app.router.add_post("/v2/charge", self.charge)
        self.app.router.add_get("/v2/{order_id}/status", self.status)
        self.app.router.add_post("/v2/{order_id}/expire", self.expire)
        self.app.router.add_post("/v2/{order_id}/refund/online/direct", self.refund)

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
        acquirer = body.get("qris", {}).get("acquirer", "gopay")
        if acquirer not in ACQUIRERS:
            return web.json_response({"status_code": "400", "status_message":
                                      "qris.acquirer must be one of gopay, airpay shopee"})
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
            "qr_string": qr_string, "acquirer": acquirer,
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
                  if key not in ("qr_string", "actions", "refunds")}
        answer["status_code"] = STATUS_CODES[answer["transaction_status"]]
        if transaction.get("refunds"):
            answer["refunds"] = transaction["refunds"]
        answer["signature_key"] = self.signature(answer)
        return web.json_response(answer)

    async def refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", request.path, dict(request.headers), body))
        if not self._authorised(request):
            return web.json_response({"status_code": "401", "status_message":
                                      "Transaction cannot be authorized with the current "
                                      "client/server key."}, status=401)
        if (failed := await self._fail()) is not None:
            return failed
        transaction = self.transactions.get(request.match_info["order_id"])
        if transaction is None:
            return web.json_response({"status_code": "404",
                                      "status_message": "Transaction doesn't exist."})
        key = body.get("refund_key") or str(uuid.uuid4())
        done = next((entry for entry in transaction.get("refunds", [])
                     if entry["refund_key"] == key), None)
        if done is not None:
            if self.repeated_refund_key == "idempotent":
                return web.json_response(self._refunded_answer(transaction, done))
            return web.json_response({"status_code": "406",
                                      "status_message": "Duplicate refund ID"})
        if transaction["transaction_status"] not in ("settlement", "partial_refund"):
            return web.json_response({"status_code": "412", "status_message":
                                      "Merchant cannot modify the status of the transaction"})
        gross = int(float(transaction["gross_amount"]))
        refunded = int(float(transaction.get("refund_amount", "0")))
        amount = body.get("amount", gross - refunded)
        if not isinstance(amount, int) or not 0 < amount <= gross - refunded:
            return web.json_response({"status_code": "414", "status_message":
                                      "Refund request is rejected due to invalid amount"})
        self._chargeback_ids += 1
        if self.deny_refunds:
            return web.json_response({
                "status_code": "202", "status_message": "Refund denied by the bank",
                "order_id": transaction["order_id"],
                "transaction_id": transaction["transaction_id"],
                "gross_amount": transaction["gross_amount"],
                "transaction_status": transaction["transaction_status"],
                "refund_chargeback_id": self._chargeback_ids, "refund_amount": "0.00",
                "refund_key": key})
        entry = {"refund_chargeback_id": self._chargeback_ids,
                 "refund_chargeback_uuid": str(uuid.uuid4()),
                 "refund_amount": f"{amount}.00", "created_at": wib(self.clock()),
                 "reason": body.get("reason", ""), "refund_key": key,
                 "refund_method": "online"}
        transaction.setdefault("refunds", []).append(entry)
        transaction["refund_amount"] = f"{refunded + amount}.00"
        transaction["transaction_status"] = ("refund" if refunded + amount == gross
                                             else "partial_refund")
        if self.refund_answer_lost:
            await asyncio.sleep(self.delay_s)
        return web.json_response(self._refunded_answer(transaction, entry))

    @staticmethod
    def _refunded_answer(transaction: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": "200",
                "status_message": "Success, refund request is approved by the bank",
                "transaction_id": transaction["transaction_id"],
                "order_id": transaction["order_id"],
                "gross_amount": transaction["gross_amount"], "payment_type": "qris",
                "transaction_time": transaction["transaction_time"],
                "transaction_status": transaction["transaction_status"],
                "refund_chargeback_id": entry["refund_chargeback_id"],
                "refund_amount": transaction["refund_amount"],
                "refund_key": entry["refund_key"]}

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

    def refund_notification(self, order_id: str, *, bare: bool = False,
                            bank_confirmed: bool = False) -> tuple[dict[str, str], bytes]:
        """The `refund`/`partial_refund` notification that follows a refund: one before
        the bank confirms, one after (`bank_confirmed`); `bare` without `refunds[]` and
        `refund_amount`, like the docs' "Refund Partial Amount" sample."""
        extra: dict[str, Any] = {}
        if not bare:
            refunds = [dict(entry) for entry in self.transactions[order_id]["refunds"]]
            if bank_confirmed:
                refunds[-1]["bank_confirmed_at"] = wib(self.clock())
            extra = {"refund_amount": self.transactions[order_id]["refund_amount"],
                     "refunds": refunds}
        return self.notification(order_id, **extra)

    def notification(self, order_id: str, *, server_key: str | None = None,
                     **extra: Any) -> tuple[dict[str, str], bytes]:
        """The HTTP notification Midtrans would POST now for the transaction's state."""
        transaction = self.transactions[order_id]
        status = transaction["transaction_status"]
        body = {
            "transaction_type": "on-us", "transaction_time": transaction["transaction_time"],
            "transaction_status": status, "transaction_id": transaction["transaction_id"],
            "status_message": "midtrans payment notification",
            "status_code": NOTIFIED_CODES[status],
            "settlement_time": transaction.get("settlement_time"),
            "payment_type": "qris", "order_id": order_id, "merchant_id": "G000000001",
            "issuer": "gopay", "gross_amount": transaction["gross_amount"],
            "fraud_status": "accept", "currency": "IDR", "acquirer": transaction["acquirer"],
        }
        if "metadata" in transaction:
            body["metadata"] = transaction["metadata"]
        if body["settlement_time"] is None:
            del body["settlement_time"]
        body.update(extra)
        body["signature_key"] = self.signature(body, server_key)
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
