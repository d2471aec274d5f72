"""A local Xendit, QR Codes API version 2022-07-31, as its public docs describe it:

- `POST /qr_codes` (Basic auth `secret_key:`, header `api-version: 2022-07-31`, JSON
  `{reference_id, type, currency, amount, expires_at?}`) -> the QR code object
  `{id: qr_..., reference_id, business_id, type, currency, amount, channel_code,
  status: ACTIVE, qr_string, expires_at, created, updated, metadata}`;
- `GET /qr_codes/{id}` -> that object (INACTIVE once paid or expired);
- `GET /qr_codes/{id}/payments` -> `{data: [payment...], has_more}`;
- `pay()` plays the payer: records a payment and POSTs the `qr.payment` callback, with
  the dashboard's `x-callback-token`, to the callback URL it is given;
- refunds (help.xendit.co 17209624920345, docs.xendit.co/qr-codes/test-scenarios, the
  Ruby gem's QRCode.refund/list_refunds/get_refund):
  `POST /qr_codes/payments/{qrpy_id}/refunds {amount?, reason?}` with an
  `Idempotency-key` header (any case) -> the refund object `{id: qrrf_..., qrpy_id,
  status: PENDING, refund_amount, payment_amount, failure_code, ...}`, and
  `GET .../refunds` and `GET .../refunds/{id}`. Only a SUCCEEDED (or partly refunded)
  payment may be refunded (else 403 INELIGIBLE_TRANSACTION), never beyond what remains
  (400 MAXIMUM_REFUND_AMOUNT_REACHED). With a test key (`xnd_development_`) the amounts
  10300/10301/10303/10304/10305 answer their documented errors, 20300-20304 end FAILED
  with their failure codes; `finish_refunds()` plays the outcome ("immediately", in test
  mode) and returns the `qr.refund` callbacks it sends. A full refund VOIDs the payment,
  a partial one marks it REFUNDED. A reused Idempotency-key is answered, as sources
  differ, with the refund as it stands (`repeated_key = "replay"`, the default) or 409
  DUPLICATE_ERROR (`"conflict"`).

Knobs: `failure` (see tests.providers.harness) breaks the create call; `status_failure`
the status calls; `refund_failure` ("timeout", "500", "rate_limited") the refund call;
`refund_answer_lost` makes the refund but never answers (until released).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from gateway.clock import Clock
from tests.providers import harness

API_VERSION = "2022-07-31"
BUSINESS_ID = "5f27a14a9bf05c73dd040bc8"
QRIS_MAX_AMOUNT = 10_000_000
# Test-mode refund amounts: answered at once with an error ...
REFUND_TEST_ERRORS = {
    10300: (400, "MAXIMUM_REFUND_AMOUNT_REACHED"), 10301: (400, "PARTIAL_REFUND_NOT_SUPPORTED"),
    10303: (400, "REFUND_NOT_SUPPORTED"), 10304: (400, "REFUND_IN_PROGRESS"),
    10305: (403, "INELIGIBLE_TRANSACTION")}
# ... or accepted, then FAILED by callback with this failure code.
REFUND_TEST_FAILURES = {
    20300: "INELIGIBLE_TRANSACTION", 20301: "INSUFFICIENT_BALANCE",
    20302: "REFUND_TEMPORARILY_UNAVAILABLE", 20303: "MAXIMUM_USER_BALANCE_EXCEEDED",
    20304: "INSUFFICIENT_BALANCE"}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _error(status: int, error_code: str, message: str) -> web.Response:
    return web.json_response({"error_code": error_code, "message": message}, status=status)


class FakeXendit(harness.FakeApi):
    def __init__(self, secret_key: str, callback_token: str, clock: Clock) -> None:
        super().__init__()
        self.secret_key = secret_key
        self.callback_token = callback_token
        self.clock = clock
        self.qr_codes: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, list[dict[str, Any]]] = {}
        self.create_requests: list[dict[str, Any]] = []
        self.refunds: dict[str, dict[str, Any]] = {}  # by qrrf id, in order of creation
        self.refund_requests: list[dict[str, Any]] = []
        self._refund_by_key: dict[str, str] = {}
        self._refund_outcome: dict[str, str | None] = {}  # None: it succeeds
        self.repeated_key = "replay"  # or "conflict"
        self.refund_failure: str | None = None
        self.refund_answer_lost = False
        # Live mode's cap on create calls (0: none), counted as Xendit does, in a
        # sliding 60-s window: beyond it 429 RATE_LIMIT_EXCEEDED, with Retry-After.
        self.rate_per_minute = 0
        self.retry_after_s: int | None = 1
        self.rate_limited_next = 0  # this many creates answer 429 whatever the count
        self.create_times_ms: list[int] = []  # creates made (not refused)
        self.refused_creates = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/qr_codes", self._create)
        app.router.add_get("/qr_codes/{qr_id}", self._get)
        app.router.add_get("/qr_codes/{qr_id}/payments", self._list_payments)
        app.router.add_post("/qr_codes/payments/{payment_id}/refunds", self._create_refund)
        app.router.add_get("/qr_codes/payments/{payment_id}/refunds", self._list_refunds)
        app.router.add_get("/qr_codes/payments/{payment_id}/refunds/{refund_id}",
                           self._get_refund)
        return app

    def _refusal(self, request: web.Request) -> web.Response | None:
        expected = "Basic " + base64.b64encode(f"{self.secret_key}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return _error(401, "INVALID_API_KEY", "API key is not authorized for this API")
        if request.headers.get("api-version") != API_VERSION:
            # Without it the request is served by the v1 API, whose shapes differ.
            return _error(400, "API_VALIDATION_ERROR", "api-version 2022-07-31 is expected")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "API_VALIDATION_ERROR", "body is not JSON")
        self.create_requests.append({"body": body, "headers": dict(request.headers)})
        if self._over_rate():
            self.refused_creates += 1
            refusal = _error(429, "RATE_LIMIT_EXCEEDED", "Too many requests")
            if self.retry_after_s is not None:
                refusal.headers["Retry-After"] = str(self.retry_after_s)
            return refusal
        problem = self._invalid(body)
        if problem:
            return _error(400, "API_VALIDATION_ERROR", problem)
        if self.failure == harness.TIMEOUT:
            await self.hang.wait()
        if self.failure == harness.SERVER_ERROR:
            return _error(500, "SERVER_ERROR", "An unexpected error occurred")
        if self.failure == harness.GARBAGE:
            return web.Response(text="<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        amount = int(body["amount"])
        qr_amount = amount + 1 if self.failure == harness.WRONG_AMOUNT else amount
        payload = harness.provider_qris("CO.XENDIT.WWW", "936008480000005469", str(qr_amount),
                                        "STREAM PAYGATE",
                                        static=self.failure == harness.STATIC_QRIS)
        if self.failure == harness.INVALID_QRIS:
            payload = harness.break_crc(payload)
        now = iso(self.clock())
        qr_id = f"qr_{uuid.uuid4()}"
        expires_at = body.get("expires_at") or iso(self.clock() + 48 * 3600 * 1000)
        self.qr_codes[qr_id] = {
            "id": qr_id, "reference_id": body["reference_id"], "business_id": BUSINESS_ID,
            "type": "DYNAMIC", "currency": "IDR", "amount": amount, "channel_code": "ID_DANA",
            "status": "ACTIVE", "qr_string": payload, "expires_at": expires_at,
            "created": now, "updated": now, "metadata": None,
        }
        self.payments[qr_id] = []
        self.create_times_ms.append(self.clock())
        return web.json_response(self._current(qr_id), status=201)

    def _over_rate(self) -> bool:
        if self.rate_limited_next:
            self.rate_limited_next -= 1
            return True
        if not self.rate_per_minute:
            return False
        since_ms = self.clock() - 60_000
        recent = sum(1 for at_ms in self.create_times_ms[-self.rate_per_minute:]
                     if at_ms > since_ms)
        return recent >= self.rate_per_minute

    def _invalid(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be an object"
        if not isinstance(body.get("reference_id"), str) or not body["reference_id"]:
            return "reference_id is required"
        if body.get("type") != "DYNAMIC" or body.get("currency") != "IDR":
            return "type must be DYNAMIC and currency IDR"
        amount = body.get("amount")
        if not isinstance(amount, int) or not 1 <= amount <= QRIS_MAX_AMOUNT:
            return "amount must be a whole number between 1 and 10000000"
        expires_at = body.get("expires_at")
        if expires_at is not None:
            try:
                moment = datetime.fromisoformat(expires_at)
            except (TypeError, ValueError):
                return "expires_at must be an ISO 8601 date"
            if moment.tzinfo is None or moment.timestamp() * 1000 <= self.clock():
                return "expires_at must be in the future"
        return None

    def _current(self, qr_id: str) -> dict[str, Any]:
        qr = dict(self.qr_codes[qr_id])
        expired = datetime.fromisoformat(qr["expires_at"]).timestamp() * 1000 <= self.clock()
        if self.payments[qr_id] or expired:
            qr["status"] = "INACTIVE"
        return qr

    def _status_refusal(self, request: web.Request) -> web.Response | None:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if self.status_failure == harness.SERVER_ERROR:
            return _error(500, "SERVER_ERROR", "An unexpected error occurred")
        if request.match_info["qr_id"] not in self.qr_codes:
            return _error(404, "DATA_NOT_FOUND", "QR code not found")
        return None

    async def _get(self, request: web.Request) -> web.Response:
        refusal = self._status_refusal(request)
        if refusal is not None:
            return refusal
        return web.json_response(self._current(request.match_info["qr_id"]))

    async def _list_payments(self, request: web.Request) -> web.Response:
        refusal = self._status_refusal(request)
        if refusal is not None:
            return refusal
        payments = self.payments[request.match_info["qr_id"]]
        return web.json_response({"data": payments, "has_more": False, "links": []})

    def _payment(self, payment_id: str) -> dict[str, Any] | None:
        return next((payment for payments in self.payments.values() for payment in payments
                     if payment["id"] == payment_id), None)

    def _remaining(self, payment: dict[str, Any]) -> int:
        taken = sum(refund["refund_amount"] for refund in self.refunds.values()
                    if refund["qrpy_id"] == payment["id"] and refund["status"] != "FAILED")
        return int(payment["amount"]) - taken

    async def _create_refund(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, "API_VALIDATION_ERROR", "body is not JSON")
        key = request.headers.get("Idempotency-Key")  # header names have no case
        self.refund_requests.append({"body": body, "headers": dict(request.headers),
                                     "payment_id": request.match_info["payment_id"]})
        if self.refund_failure == harness.TIMEOUT:
            await self.hang.wait()
        if self.refund_failure == harness.SERVER_ERROR:
            return _error(500, "SERVER_ERROR", "An unexpected error occurred")
        if self.refund_failure == "rate_limited":
            return _error(429, "RATE_LIMIT_EXCEEDED", "Too many requests")
        if key is not None and key in self._refund_by_key:
            if self.repeated_key == "conflict":
                return _error(409, "DUPLICATE_ERROR",
                              "A request with this idempotency key was already made")
            return web.json_response(self.refunds[self._refund_by_key[key]])
        payment = self._payment(request.match_info["payment_id"])
        if payment is None:
            return _error(404, "DATA_NOT_FOUND", "Payment not found")
        amount = body.get("amount", self._remaining(payment))
        if not isinstance(amount, int) or amount <= 0:
            return _error(400, "API_VALIDATION_ERROR", "amount must be a positive integer")
        if self.secret_key.startswith("xnd_development_") and amount in REFUND_TEST_ERRORS:
            status, code = REFUND_TEST_ERRORS[amount]
            return _error(status, code, f"Test scenario {amount}")
        if payment["status"] not in ("SUCCEEDED", "REFUNDED"):
            return _error(403, "INELIGIBLE_TRANSACTION", "The payment cannot be refunded")
        if amount > self._remaining(payment):
            return _error(400, "MAXIMUM_REFUND_AMOUNT_REACHED",
                          "The refund amount exceeds the amount left to refund")
        now = iso(self.clock())
        refund = {"id": f"qrrf_{uuid.uuid4()}", "qrpy_id": payment["id"], "status": "PENDING",
                  "currency": "IDR", "payment_amount": payment["amount"],
                  "refund_amount": amount, "channel_code": payment["channel_code"],
                  "reason": body.get("reason"), "failure_code": None, "created": now,
                  "updated": now, "refunded_at": None}
        self.refunds[refund["id"]] = refund
        self._refund_outcome[refund["id"]] = REFUND_TEST_FAILURES.get(amount) \
            if self.secret_key.startswith("xnd_development_") else None
        if key is not None:
            self._refund_by_key[key] = refund["id"]
        if self.refund_answer_lost:
            await self.hang.wait()
        return web.json_response(refund)

    async def _list_refunds(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        payment_id = request.match_info["payment_id"]
        return web.json_response({"data": [refund for refund in self.refunds.values()
                                           if refund["qrpy_id"] == payment_id],
                                  "has_more": False})

    async def _get_refund(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if self.status_failure == harness.SERVER_ERROR:
            return _error(500, "SERVER_ERROR", "An unexpected error occurred")
        refund = self.refunds.get(request.match_info["refund_id"])
        if refund is None or refund["qrpy_id"] != request.match_info["payment_id"]:
            return _error(404, "DATA_NOT_FOUND", "Refund not found")
        return web.json_response(refund)

    def finish_refunds(self) -> list[bytes]:
        """Xendit settles the pending refunds and sends a `qr.refund` callback for each:
        the callback bodies, in order."""
        callbacks = []
        for refund in self.refunds.values():
            if refund["status"] != "PENDING":
                continue
            failure = self._refund_outcome[refund["id"]]
            refund.update(status="FAILED" if failure else "SUCCEEDED", failure_code=failure,
                          updated=iso(self.clock()),
                          refunded_at=None if failure else iso(self.clock()))
            payment = self._payment(refund["qrpy_id"])
            if payment is not None and not failure:
                payment["status"] = "VOIDED" if self._remaining(payment) == 0 \
                    and refund["refund_amount"] == payment["amount"] else "REFUNDED"
            callbacks.append(self.refund_callback(refund["id"]))
        return callbacks

    def refund_callback(self, refund_id: str, **changes: Any) -> bytes:
        """The `qr.refund` callback for the refund as it stands (or as `changes` claim)."""
        return json.dumps({"event": "qr.refund", "api_version": API_VERSION,
                           "business_id": BUSINESS_ID, "created": iso(self.clock()),
                           "data": {**self.refunds[refund_id], **changes}}).encode()

    def payment_callback(self, qr_id: str, amount: int | None = None,
                         legacy: bool = False) -> bytes:
        """Record a payment of the QR (its own amount unless told otherwise) and return
        the callback body Xendit sends for it."""
        qr = self.qr_codes[qr_id]
        payment = {
            "id": f"qrpy_{uuid.uuid4()}", "business_id": BUSINESS_ID, "currency": "IDR",
            "amount": qr["amount"] if amount is None else amount, "status": "SUCCEEDED",
            "created": iso(self.clock()), "qr_id": qr_id, "qr_string": qr["qr_string"],
            "reference_id": qr["reference_id"], "type": "DYNAMIC",
            "channel_code": qr["channel_code"], "expires_at": qr["expires_at"],
            "description": None, "basket": None, "metadata": None,
            "payment_detail": {"receipt_id": secrets.token_hex(6), "source": "DANA",
                               "name": None, "account_details": None},
        }
        self.payments[qr_id].append(payment)
        if legacy:
            event: dict[str, Any] = {
                "event": "qr.payment", "id": payment["id"], "amount": payment["amount"],
                "created": payment["created"], "status": "COMPLETED",
                "qr_code": {"id": qr_id, "external_id": qr["reference_id"],
                            "qr_string": qr["qr_string"], "type": "DYNAMIC"},
                "payment_details": {"source": "DANA", "receipt_id": "290b03ee7629"},
            }
        else:
            event = {"event": "qr.payment", "api_version": API_VERSION,
                     "business_id": BUSINESS_ID, "created": payment["created"],
                     "data": payment}
        return json.dumps(event).encode()

    async def pay(self, http: aiohttp.ClientSession, qr_id: str, callback_url: str, *,
                  amount: int | None = None, token: str | None = None,
                  legacy: bool = False) -> tuple[int, Any]:
        """Pay the QR and deliver the callback as Xendit does: the dashboard's token in
        `x-callback-token` (another `token` to play a forger, "" to send none)."""
        raw_body = self.payment_callback(qr_id, amount, legacy)
        headers = {"Content-Type": "application/json", "webhook-id": secrets.token_hex(12)}
        token = self.callback_token if token is None else token
        if token:
            headers["x-callback-token"] = token
        return await harness.post_json(http, callback_url, raw_body, headers)
