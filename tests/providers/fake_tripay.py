"""A local Tripay (closed payment), as its public developer docs describe it:

- `POST /transaction/create` (`Authorization: Bearer <api key>`, JSON `{method,
  merchant_ref, amount, customer_name, customer_email, order_items, expired_time?,
  callback_url?, signature}`, signature = hex HMAC-SHA256(private key, merchant code +
  merchant_ref + amount)) -> `{success, message, data: {reference, merchant_ref, amount,
  fee_merchant, fee_customer, total_fee, amount_received, status: UNPAID, expired_time,
  qr_string, ...}}`; QRIS channels: Rp1,000-5,000,000, expiry 10-60 minutes (QRIS) or
  10-1440 (QRIS2, QRISC), fee Rp750 + 0.7% rounded up;
- `GET /transaction/detail?reference=` -> the same `data`, with `paid_at` once paid;
- `pay()` plays the payer and POSTs the callback, signed with `X-Callback-Signature` =
  hex HMAC-SHA256 of the raw body with the private key and `X-Callback-Event:
  payment_status`, to the callback URL it is given.

Fees: by default the merchant pays them (`amount` = the price, `fee_merchant` = the fee,
`amount_received` = price - fee); with `customer_pays_fee` (a merchant setting in
Tripay's dashboard) the payer does: `amount` = price + `fee_customer`, `fee_merchant` 0,
`amount_received` = the price, and the QR asks for `amount` (two public sandbox answers:
100000 -> 101450, 61800 -> 62983).

Knobs: `failure` (see tests.providers.harness, and SUCCESS_FALSE) breaks the create call;
`customer_pays_fee`; `expires_lazily` leaves a transaction UNPAID for a while past its
expired_time, as batch expiry jobs do; `sandbox` answers as its sandbox did in public
code (`DEV-` references, `qr_string: "SANDBOX MODE"`); `unauthorized_ip` answers every
call `403 Unauthorized IP (<it>)`, as production does for an address missing from the
merchant's whitelist (seen with IPv6 addresses too).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from gateway.clock import Clock
from tests.providers import harness

QRIS_METHODS = {"QRIS": 60, "QRIS2": 1440, "QRISC": 1440}  # method -> max expiry, minutes
MIN_EXPIRY_MINUTES = 10
MIN_AMOUNT, MAX_AMOUNT = 1_000, 5_000_000
# A knob of its own: Tripay also says no with HTTP 200 and `success: false`.
SUCCESS_FALSE = "success_false"


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "message": message}, status=status)


def qris_fee(amount: int) -> int:
    return 750 + math.ceil(amount * 7 / 1000)


# What Tripay accepts as customer_email ("Invalid customer email" otherwise).
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


class FakeTripay(harness.FakeApi):
    def __init__(self, api_key: str, private_key: str, merchant_code: str,
                 clock: Clock) -> None:
        super().__init__()
        self.api_key = api_key
        self.private_key = private_key
        self.merchant_code = merchant_code
        self.clock = clock
        self.transactions: dict[str, dict[str, Any]] = {}
        self.create_requests: list[dict[str, Any]] = []
        self.customer_pays_fee = False
        self.expires_lazily = False  # leaves a transaction UNPAID past its expired_time
        self.sandbox = False
        self.unauthorized_ip: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/transaction/create", self._create)
        app.router.add_get("/transaction/detail", self._detail)
        return app

    def signature(self, text: str | bytes) -> str:
        message = text.encode() if isinstance(text, str) else text
        return hmac.new(self.private_key.encode(), message, hashlib.sha256).hexdigest()

    def _gatekeeper(self, request: web.Request) -> web.Response | None:
        if self.unauthorized_ip is not None:
            return _refused(403, f"Unauthorized IP ({self.unauthorized_ip}). Please add this IP"
                                 f" to your merchant Whitelist IP ({self.merchant_code})")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _refused(401, "Invalid API Key")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := self._gatekeeper(request)) is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _refused(400, "Invalid request body")
        self.create_requests.append({"body": body, "headers": dict(request.headers)})
        problem = self._invalid(body)
        if problem:
            return _refused(400, problem)
        if self.failure == harness.TIMEOUT:
            await self.hang.wait()
        if self.failure == harness.SERVER_ERROR:
            return web.Response(status=500, text="Internal Server Error")
        if self.failure == SUCCESS_FALSE:
            return web.json_response({"success": False, "message": "Merchant is not active"})
        if self.failure == harness.GARBAGE:
            return web.Response(text="<html><body>Sedang pemeliharaan</body></html>",
                                content_type="text/html")
        price = int(body["amount"])
        fee = qris_fee(price)
        fee_customer = fee if self.customer_pays_fee else 0
        payable = price + fee_customer
        qr_amount = payable + 1 if self.failure == harness.WRONG_AMOUNT else payable
        payload = harness.provider_qris("ID.CO.SHOPEE.WWW", "936009180000000007",
                                        f"{qr_amount}.00", "STREAM PAYGATE",
                                        static=self.failure == harness.STATIC_QRIS)
        if self.failure == harness.INVALID_QRIS:
            payload = harness.break_crc(payload)
        if self.sandbox:
            payload = "SANDBOX MODE"
        reference = (f"{'DEV-' if self.sandbox else ''}T{self.merchant_code[-5:]}"
                     f"{secrets.randbelow(10**12):012d}")
        self.transactions[reference] = {
            "reference": reference, "merchant_ref": body["merchant_ref"],
            "payment_selection_type": "static", "payment_method": body["method"],
            "payment_name": "QRIS by ShopeePay", "customer_name": body["customer_name"],
            "customer_email": body["customer_email"], "customer_phone": None,
            "callback_url": body.get("callback_url"), "return_url": None,
            "amount": payable, "fee_merchant": fee - fee_customer, "fee_customer": fee_customer,
            "total_fee": fee, "amount_received": payable - fee,
            "pay_code": None, "pay_url": None,
            "checkout_url": f"https://tripay.co.id/checkout/{reference}",
            "status": "UNPAID", "expired_time": body.get("expired_time")
            or self.clock() // 1000 + 24 * 3600,
            "order_items": body["order_items"], "instructions": [],
            "qr_string": payload,
            "qr_url": f"https://tripay.co.id/qr/{reference}",
        }
        return web.json_response({"success": True, "message": "",
                                  "data": self.transactions[reference]})

    def _invalid(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "Invalid request body"
        method = body.get("method")
        if method not in QRIS_METHODS:
            return "Invalid or inactive payment channel"
        amount, ref = body.get("amount"), body.get("merchant_ref")
        if not isinstance(amount, int) or not MIN_AMOUNT <= amount <= MAX_AMOUNT:
            return "Amount must be between 1000 and 5000000"
        if not isinstance(ref, str) or not ref:
            return "merchant_ref is required"
        if not body.get("customer_name") or not body.get("customer_email"):
            return "customer_name and customer_email are required"
        if not _EMAIL.fullmatch(str(body["customer_email"])):
            return "Invalid customer email"
        items = body.get("order_items")
        if not isinstance(items, list) or not items or sum(
                item["price"] * item["quantity"] for item in items) != amount:
            return "The sum of order_items must equal amount"
        if not hmac.compare_digest(str(body.get("signature")),
                                   self.signature(f"{self.merchant_code}{ref}{amount}")):
            return "Invalid signature"
        expired_time = body.get("expired_time")
        if expired_time is not None:
            minutes = (expired_time - self.clock() // 1000) / 60
            if not MIN_EXPIRY_MINUTES <= minutes <= QRIS_METHODS[method]:
                return f"Expired time must be between 10 and {QRIS_METHODS[method]} minutes"
        return None

    async def _detail(self, request: web.Request) -> web.Response:
        if (refused := self._gatekeeper(request)) is not None:
            return refused
        if self.status_failure == harness.SERVER_ERROR:
            return web.Response(status=500, text="Internal Server Error")
        transaction = self.transactions.get(request.query.get("reference", ""))
        if transaction is None:
            return _refused(404, "Transaction not found")
        current = dict(transaction)
        if (current["status"] == "UNPAID" and not self.expires_lazily
                and self.clock() // 1000 >= current["expired_time"]):
            current["status"] = "EXPIRED"
        return web.json_response({"success": True, "message": "", "data": current})

    def payment_callback(self, reference: str, *, total_amount: int | None = None,
                         status: str = "PAID") -> bytes:
        """Move the transaction to `status` (paid in full unless `total_amount` says
        otherwise) and return the callback body Tripay sends for it."""
        transaction = self.transactions[reference]
        paid_at = self.clock() // 1000
        transaction["status"] = status
        if status == "PAID":
            transaction["paid_at"] = str(paid_at)  # the detail API gives it as a string
        total = transaction["amount"] if total_amount is None else total_amount
        body = {
            "reference": reference, "merchant_ref": transaction["merchant_ref"],
            "payment_method": "QRIS by ShopeePay",
            "payment_method_code": transaction["payment_method"],
            "total_amount": total, "fee_merchant": transaction["fee_merchant"],
            "fee_customer": transaction["fee_customer"], "total_fee": transaction["total_fee"],
            "amount_received": total - transaction["total_fee"], "is_closed_payment": 1,
            "status": status, "paid_at": paid_at if status == "PAID" else None,
            "note": None,
        }
        # Tripay's servers are PHP: compact JSON with escaped slashes.
        return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode()

    async def pay(self, http: aiohttp.ClientSession, reference: str, callback_url: str, *,
                  total_amount: int | None = None, status: str = "PAID",
                  private_key: str | None = None, event: str = "payment_status",
                  signature: bool = True) -> tuple[int, Any]:
        """Deliver the callback as Tripay does (another `private_key` plays a forger,
        `signature=False` sends none)."""
        raw_body = self.payment_callback(reference, total_amount=total_amount, status=status)
        key = (private_key or self.private_key).encode()
        headers = {"Content-Type": "application/json", "X-Callback-Event": event}
        if signature:
            headers["X-Callback-Signature"] = hmac.new(key, raw_body, hashlib.sha256).hexdigest()
        return await harness.post_json(http, callback_url, raw_body, headers)
