"""otomatis.vip, the original prototype's provider (see ../shared/providers.md).

It has no public official docs; what is here follows public clients of its API:
- `POST /api/generate {username, amount, uuid (the API key), expire (s), custom_ref}`
  answers `{status: true, data: "<QRIS>", trx_id, fee, expired_at}`; trxId is its
  `trx_id`, which it also writes in the payload's tag 62.07. It takes Rp10,000 to
  Rp10,000,000 (start-up refuses a catalog price outside: settings.PROVIDER_PRICE_RUPIAH).
- `POST /api/checkstatus/v2/{trx_id} {uuid, client, client_key}` (the API key, the
  panel's client name and that client's own secret) answers `{status: "success" |
  "pending", amount, trx_id, rrn, finish_at, ...}` or `{status: false, error}`.
- Its callback is unsigned JSON (`{trx_id, amount, status: "success", ...}`). Anyone
  can send one, so it is never believed: it only names a transaction, whose status is
  then asked for, server to server, and that answer is what gets applied (through the
  same path, and with the same event id, as a reconciliation would). When checkstatus
  cannot be asked, a hint naming our uuid as merchant_id is kept as `unconfirmed`
  (answered 200) and reconciliation asks later; any other is answered 502.
- Withdrawal callbacks come to the same URL (`{amount, partner_ref_no, status,
  transaction_date, merchant_id}`): kept in the ledger when their merchant_id is our
  uuid (a secret only it and we know), never applied.
- Both are answered with `"status": true`, which is what it reads.
- Times come as `2023-07-31T08:49:56` (WIB), `2024-05-06T09:35:44.000Z`, or
  `YYYY-MM-DD HH:MM:SS`.
It has no cancel API (the `expire` given at creation ends a transaction there) and no
refund API (refunds are a person's task).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, ClassVar

from gateway.clock import Clock
from gateway.errors import (
    InvalidRequest,
    NotificationRejected,
    ProviderBadResponse,
    ProviderUnavailable,
)
from gateway.ids import TRX_ID
from gateway.model import Notification
from gateway.parsing import PROVIDER_JSON_MAX_DEPTH, too_deep
from gateway.providers.base import (
    CreatedQris,
    Provider,
    TransactionState,
    TransactionStatus,
    confirmed_body,
    path_id,
    status_notification,
    unconfirmed,
)
from gateway.providers.http_api import call_json, whole_rupiah
from gateway.providers.values import provider_time_ms

PRODUCTION_URL = "https://rest.otomatis.vip"
_MAX_HINT_BYTES = 8192
_WITHDRAWAL_REF = re.compile(r"[A-Za-z0-9_.:-]{1,40}")


class OtomatisProvider(Provider):
    name = "otomatis"
    callback_answer_fields: ClassVar[Mapping[str, bool]] = MappingProxyType({"status": True})

    def __init__(self, username: str, api_key: str, client: str, client_key: str,
                 clock: Clock, *, base_url: str | None = None, timeout_s: float = 10) -> None:
        self._username = username  # a label it echoes as terminal_id
        self._api_key = api_key  # the merchant's uuid
        self._client = client
        self._client_key = client_key
        self._clock = clock
        self._base_url = (base_url or PRODUCTION_URL).rstrip("/")
        self._timeout_s = timeout_s

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await call_json(self.http, self.name, "POST", self._base_url + path,
                               timeout_seconds=self._timeout_s, json=body,
                               headers={"Accept": "application/json"})

    async def create_qris(
        self, reference: str, amount_rupiah: int, expires_at_ms: int
    ) -> CreatedQris:
        expire_s = max(60, math.ceil((expires_at_ms - self._clock()) / 1000))
        _, answer = await self._post("/api/generate", {
            "username": self._username,
            "amount": amount_rupiah,
            "uuid": self._api_key,
            "expire": expire_s,
            "custom_ref": custom_ref(reference),
        })
        if not isinstance(answer, dict) or answer.get("status") is not True:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ProviderBadResponse(detail=f"generate refused: {str(error)[:120]}")
        qr_string, trx_id = answer.get("data"), answer.get("trx_id")
        if not isinstance(qr_string, str) or not isinstance(trx_id, str) \
                or not TRX_ID.fullmatch(trx_id):
            raise ProviderBadResponse(detail="generate answer without data or trx_id")
        raw_fee = answer.get("fee")
        fee = 0 if raw_fee in (None, 0, "0") else whole_rupiah(raw_fee)
        if fee is None:
            raise ProviderBadResponse(detail="generate answer with an unreadable fee")
        return CreatedQris(trx_id=trx_id, qr_string=qr_string, fee=fee)

    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        raise NotificationRejected(reason="otomatis.vip signs nothing: a hint, not proof")

    async def authenticate(
        self, headers: Mapping[str, str], raw_body: bytes, received_at_ms: int
    ) -> Notification:
        """The callback only names a transaction; the status API says what happened."""
        if len(raw_body) > _MAX_HINT_BYTES:
            raise InvalidRequest(detail="callback body too large")
        if too_deep(raw_body, PROVIDER_JSON_MAX_DEPTH):
            raise InvalidRequest(detail="callback body nested too deep")
        try:
            hint = json.loads(raw_body)
        except ValueError:
            raise InvalidRequest(detail="callback body is not JSON") from None
        if not isinstance(hint, dict):
            raise InvalidRequest(detail="callback body is not an object")
        raw_text = raw_body.decode("utf-8", "replace")
        if "partner_ref_no" in hint and "trx_id" not in hint:
            return self._withdrawal(hint, raw_text, received_at_ms)
        trx_id = hint.get("trx_id")
        if not isinstance(trx_id, str) or not TRX_ID.fullmatch(trx_id):
            raise InvalidRequest(detail="callback without a valid trx_id")
        try:
            status = await self.transaction_status(trx_id)
        except ProviderUnavailable:
            if not self._ours(hint):
                raise  # anyone's claim, unheard: the ledger is not its notepad
            claimed = whole_rupiah(hint.get("amount"))
            return unconfirmed(self.name, Notification(
                provider=self.name, event_id=trx_id, trx_id=trx_id, amount=claimed or 0,
                reported_status=str(hint.get("status"))[:32],
                paid_at_ms=None, received_at_ms=received_at_ms, raw_body=raw_text))
        if status.state == TransactionState.UNKNOWN:
            raise NotificationRejected(reason="transaction unknown to the status API")
        note = status_notification(self.name, status, received_at_ms)
        # Both are kept: what was claimed, and what the provider confirmed.
        return replace(note, raw_body=confirmed_body(raw_text, status.raw_body))

    def _withdrawal(self, callback: dict[str, Any], raw_body: str,
                    received_at_ms: int) -> Notification:
        """Money leaving our balance, not a payment: kept for the books, applied to
        nothing. Unsigned like the rest, so it counts only when it names our uuid."""
        if not self._ours(callback):
            raise NotificationRejected(reason="withdrawal callback without our merchant id")
        reference, status = callback.get("partner_ref_no"), callback.get("status")
        if not isinstance(reference, str) or not _WITHDRAWAL_REF.fullmatch(reference):
            raise InvalidRequest(detail="withdrawal callback without a valid partner_ref_no")
        return Notification(
            provider=self.name,
            # One event per withdrawal and status: its retries are duplicates.
            event_id=f"withdrawal:{reference}:{re.sub(r'[^a-z]', '', str(status).lower())[:10]}",
            trx_id="",
            amount=whole_rupiah(callback.get("amount")) or 0,
            reported_status="withdrawal",
            paid_at_ms=provider_time_ms(callback.get("transaction_date")),
            received_at_ms=received_at_ms,
            raw_body=raw_body,
        )

    def _ours(self, callback: dict[str, Any]) -> bool:
        """Whether an (unsigned) callback names our uuid as its merchant_id: a secret
        that only otomatis.vip and we know, so the nearest thing to a signature."""
        merchant_id = callback.get("merchant_id")
        return isinstance(merchant_id, str) and hmac.compare_digest(
            merchant_id.encode("utf-8", "replace"), self._api_key.encode())

    async def _transaction_status(self, trx_id: str) -> TransactionStatus:
        _, answer = await self._post(f"/api/checkstatus/v2/{path_id(trx_id)}", {
            "uuid": self._api_key, "client": self._client, "client_key": self._client_key,
        })
        if not isinstance(answer, dict):
            raise ProviderBadResponse(detail="checkstatus answer is not an object")
        raw = json.dumps(answer)
        state_text = answer.get("status")
        if state_text is False:  # {status: false, error}: no such transaction here
            return TransactionStatus(trx_id, TransactionState.UNKNOWN, None, None,
                                     raw_body=raw)
        if answer.get("trx_id") not in (None, trx_id):
            raise ProviderBadResponse(detail="checkstatus answered about another trx_id")
        if state_text == "success":
            amount = whole_rupiah(answer.get("amount"))
            if amount is None:
                raise ProviderBadResponse(detail="checkstatus success without an amount")
            return TransactionStatus(trx_id, TransactionState.PAID, amount,
                                     provider_time_ms(answer.get("finish_at")), raw_body=raw)
        if state_text == "pending":
            return TransactionStatus(trx_id, TransactionState.PENDING, None, None,
                                     raw_body=raw)
        if state_text in ("expired", "failed", "cancel", "canceled", "cancelled"):
            return TransactionStatus(trx_id, TransactionState.EXPIRED, None, None,
                                     raw_body=raw)
        raise ProviderBadResponse(detail=f"checkstatus status {str(state_text)[:40]!r}")


def custom_ref(reference: str) -> str:
    """Our reference in the form otomatis.vip accepts (A-Z, 0-9, at most 36): a
    session id's 128 random bits as 32 hex digits."""
    try:
        raw = base64.urlsafe_b64decode(reference + "=" * (-len(reference) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if raw and len(raw) <= 18:
        return raw.hex().upper()
    return re.sub(r"[^A-Z0-9]", "", reference.upper())[:36]
