"""What every adapter of a provider's HTTP API does the same way: one bounded call whose
failures (timeout, refused connection, 5xx, a body that is not JSON) become
`ProviderUnavailable`, typed decoding of the answer, and the check of a returned QRIS
payload before any viewer sees it. Nothing here serves HTTP.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgspec

from gateway import qris
from gateway.errors import (
    ProviderBadResponse,
    ProviderRateLimited,
    ProviderReturnedInvalidQris,
    ProviderTimeout,
    ProviderUnavailable,
)
from gateway.logs import log_event

log = logging.getLogger("gateway.providers")

T = TypeVar("T")

# A provider's JSON answers are a few KB; anything far larger is not one of them.
_MAX_ANSWER_BYTES = 1 << 20
# How much of a refused request's answer goes into the log, to say why.
_LOGGED_ANSWER_CHARS = 300


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    raw: bytes
    retry_after_s: int | None = None  # a 429's Retry-After, in whole seconds, if given


async def call(http: aiohttp.ClientSession, provider: str, method: str, url: str, *,
               timeout_seconds: float, **request: Any) -> Answer:
    """One request. A provider that does not answer, or answers 5xx, is unavailable; a
    4xx answer is returned, because what it means depends on the call. Every call that
    gets an answer leaves a `provider_call` line: what an operator reads on the first
    live payments (the path only: a query may carry a reference, never a secret, but
    the host is in the settings already)."""
    started_s = time.perf_counter()
    try:
        async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                                **request) as response:
            raw = await _read_bounded(response)
            status = response.status
            retry_after_s = _retry_after_s(response.headers.get("Retry-After"))
    except TimeoutError:
        log_event(log, "provider_timeout", level=logging.WARNING, provider=provider,
                  method=method, url=url, timeoutSeconds=timeout_seconds)
        raise ProviderTimeout() from None
    except aiohttp.ClientError as exc:
        log_event(log, "provider_unreachable", level=logging.WARNING, provider=provider,
                  method=method, url=url, error=type(exc).__name__)
        raise ProviderUnavailable() from None
    log_event(log, "provider_call", provider=provider, method=method,
              path=urlsplit(url).path, status=status,
              elapsedMs=round((time.perf_counter() - started_s) * 1000, 1))
    if status >= 500 or len(raw) > _MAX_ANSWER_BYTES:
        log_event(log, "provider_failed", level=logging.WARNING, provider=provider,
                  method=method, url=url, status=status, answer=excerpt(raw))
        raise ProviderUnavailable()
    return Answer(status, raw, retry_after_s)


def _retry_after_s(value: str | None) -> int | None:
    """Retry-After in seconds (its date form is not used by the providers we know)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(int(value.strip()), 3600)


def rate_limited(provider: str, action: str, answer: Answer) -> ProviderRateLimited:
    """A 429: the provider asks us to slow down (Xendit's `RATE_LIMIT_EXCEEDED`)."""
    log_event(log, "provider_rate_limited", level=logging.WARNING, provider=provider,
              action=action, retryAfterSeconds=answer.retry_after_s,
              answer=excerpt(answer.raw))
    return ProviderRateLimited(retry_after_s=answer.retry_after_s or 0)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The body, or its first _MAX_ANSWER_BYTES + 1 bytes: enough to see it is too big."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)


def decode(provider: str, answer: Answer, kind: type[T]) -> T:
    """The answer as the documented shape, or the provider is treated as broken."""
    try:
        return msgspec.json.decode(answer.raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        log_event(log, "provider_answer_unreadable", level=logging.ERROR, provider=provider,
                  status=answer.status, problem=str(exc), answer=excerpt(answer.raw))
        raise ProviderBadResponse(detail=str(exc)[:200]) from None


def refused(provider: str, action: str, answer: Answer) -> ProviderBadResponse:
    """A 4xx where success was expected: usually wrong keys or a setting the provider
    does not accept, which the operator must see in the log."""
    log_event(log, "provider_refused", level=logging.ERROR, provider=provider, action=action,
              status=answer.status, answer=excerpt(answer.raw))
    return ProviderBadResponse(detail=f"{action}: HTTP {answer.status}")


async def call_json(http: aiohttp.ClientSession, provider: str, method: str, url: str, *,
                    timeout_seconds: float, **request: Any) -> tuple[int, Any]:
    """`call`, for APIs whose answers are read loosely (their shapes are not documented
    well enough for a strict type): the status and the decoded JSON."""
    answer = await call(http, provider, method, url, timeout_seconds=timeout_seconds,
                        allow_redirects=False, **request)
    if answer.status == 429:  # Midtrans answers it without a body: nothing to read
        raise rate_limited(provider, f"{method} {url.rsplit('/', 1)[-1]}", answer)
    try:
        return answer.status, json.loads(answer.raw)
    except ValueError:
        log_event(log, "provider_answer_unreadable", level=logging.ERROR, provider=provider,
                  status=answer.status, problem="not JSON", answer=excerpt(answer.raw))
        raise ProviderBadResponse(detail="not JSON") from None


def excerpt(raw: bytes) -> str:
    return raw[:_LOGGED_ANSWER_CHARS].decode("utf-8", "replace")


def whole_rupiah(value: object) -> int | None:
    """An amount a provider reports (10000, 10000.0, "10000.00") as whole rupiah, or None
    when it is not a whole, positive number of rupiah."""
    try:
        amount = Decimal(str(value))
    except (ArithmeticError, ValueError):
        return None
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
        return None
    return int(amount)


def iso_to_ms(value: str | None) -> int | None:
    """An ISO 8601 time with an offset, as ms since the epoch; None when absent or not
    such a time (a naive time would be read in this machine's zone, so it is refused)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def checked_qris(provider: str, trx_id: str, payload: str, payable_rupiah: int) -> str:
    """The payload a viewer will scan, after the checks that protect them: well-formed
    TLV, CRC, dynamic (point of initiation 12), and exactly the amount to pay. Which
    tag-62 sub-field carries the provider's own reference differs per provider (Xendit
    writes a short random label, not its `qr_` id), so that is not checked here."""
    found = qris.problems(payload)
    if not found:
        parsed = qris.parse(payload)
        if not parsed.is_dynamic:
            found.append("not a dynamic QRIS (point of initiation 12)")
        if parsed.amount != Decimal(payable_rupiah):
            found.append(f"amount {parsed.get('54')!r} is not {payable_rupiah}")
    if found:
        log_event(log, "provider_qris_rejected", level=logging.ERROR, provider=provider,
                  trxId=trx_id, problems=found)
        raise ProviderReturnedInvalidQris()
    return payload
