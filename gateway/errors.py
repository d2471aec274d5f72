"""Domain exceptions. They know nothing of HTTP: `middlewares.error_middleware` maps each
class to a status code and renders the SPEC's JSON error, once, for the whole app.

`code` is the stable machine code clients may branch on; the people-facing text lives in
`locales/*.toml` under `[errors]`, keyed by that code, with `params` filled in.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar


class GatewayError(Exception):
    code: ClassVar[str] = "error"

    def __init__(self, **params: Any) -> None:
        super().__init__(f"{self.code} {params}" if params else self.code)
        self.params = params


class InvalidRequest(GatewayError):
    """Malformed JSON, wrong types, missing or oversized fields. `detail` says which, in
    English, for the logs; people are told only which `field` (when known), in their
    language: a library's own wording never reaches a viewer."""

    code = "invalid_request"

    def __init__(self, detail: str, field: str | None = None) -> None:
        field = field or _field_named_in(detail)
        super().__init__(detail=detail, **({"field": field} if field else {}))


# How msgspec names the field it refused: "... - at `$.streamId`", "... field `amount`".
_LIBRARY_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]{1,40})`|field `([A-Za-z0-9_]{1,40})`")


def _field_named_in(detail: str) -> str | None:
    match = _LIBRARY_FIELD.search(detail)
    return (match.group(1) or match.group(2)) if match else None


class AmountMismatch(GatewayError):
    code = "amount_mismatch"

    def __init__(self, price: int) -> None:
        super().__init__(price=price)


class UnknownStream(GatewayError):
    code = "unknown_stream"


class SessionNotFound(GatewayError):
    code = "session_not_found"


class GrantNotFound(GatewayError):
    code = "grant_not_found"


class NotYours(GatewayError):
    """The caller asked about another viewer's userId or session."""

    code = "forbidden"


class Unauthenticated(GatewayError):
    """A bearer token or API key was presented and is not valid."""

    code = "unauthenticated"


class AlreadyHasAccess(GatewayError):
    code = "already_has_access"


class StreamOffline(GatewayError):
    """The stream is offline and not scheduled, or has ended: nothing to sell now."""

    code = "stream_offline"


class StreamCancelled(GatewayError):
    """The show was called off: nothing is sold for it any more."""

    code = "stream_cancelled"


class NothingToRefund(GatewayError):
    """The transaction brought no money, or all of it is being (or was) given back."""

    code = "nothing_to_refund"

    def __init__(self, paid: int, refunded: int) -> None:
        super().__init__(paid=paid, refunded=refunded)


class RefundTooLarge(GatewayError):
    code = "refund_too_large"

    def __init__(self, remaining: int) -> None:
        super().__init__(remaining=remaining)


class RefundNotFound(GatewayError):
    code = "refund_not_found"


class NotificationRejected(GatewayError):
    """A provider notification that is not authentic: missing, bad or stale signature."""

    code = "invalid_signature"

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason)


class ProviderUnavailable(GatewayError):
    code = "provider_unavailable"


class ProviderRateLimited(ProviderUnavailable):
    """The provider refused a call for going too fast (HTTP 429; Xendit's
    `RATE_LIMIT_EXCEEDED`): nothing was made. `retry_after_s` is what it asked for
    (Retry-After), or our own guess. A QR request is put back in line, never refused
    for it (gateway/line.py); elsewhere it is a provider that cannot answer now."""

    code = "provider_rate_limited"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s=retry_after_s)


class ProviderReturnedInvalidQris(GatewayError):
    code = "provider_invalid_qris"


class ProviderSandboxQris(ProviderReturnedInvalidQris):
    """The provider's sandbox handed back a placeholder where a QRIS should be (Tripay:
    `"SANDBOX MODE"`): nothing a viewer could scan and pay, so nothing is sold."""

    code = "provider_sandbox_qris"


class ProviderTimeout(ProviderUnavailable):
    """The provider's API did not answer within GATEWAY_PROVIDER_TIMEOUT_SECONDS (a kind
    of unavailability with its own code and status, 503: try again shortly)."""

    code = "provider_timeout"


class ProviderBadResponse(ProviderUnavailable):
    """The provider answered, but with something that is not its API's answer (garbage,
    an error it should not give, a refusal of a well-formed request)."""

    code = "provider_bad_response"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail=detail)


class SimulatorDisabled(GatewayError):
    code = "simulator_disabled"


class NoAccess(GatewayError):
    """The HLS gate refused a request: no valid access token for this stream.
    `reason` is for the logs; viewers all get the same message."""

    code = "no_access"

    def __init__(self, reason: str = "no token") -> None:
        super().__init__(reason=reason)


class DeviceLimit(GatewayError):
    """The purchase is playing on as many devices as it may (SPEC, Devices)."""

    code = "device_limit"

    def __init__(self, max_devices: int) -> None:
        super().__init__(max_devices=max_devices)


class MediaNotFound(GatewayError):
    """The stream's origin has no such playlist or segment."""

    code = "not_found"


class UpstreamFailed(GatewayError):
    code = "upstream_failed"


class RequestTimeout(GatewayError):
    """The client did not send its whole request body in time."""

    code = "request_timeout"


class RateLimited(GatewayError):
    """Too many payment sessions created from one address or by one viewer lately."""

    code = "rate_limited"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s=retry_after_s)


class TooManyWebSockets(GatewayError):
    """One viewer holds as many status sockets as they may."""

    code = "too_many_websockets"


class StoreUnavailable(GatewayError):
    """The store did not answer in time, or refused: unreachable, paused, loading,
    locked by another process. Worth retrying after a short while."""

    code = "store_unavailable"


class UpstreamTimeout(GatewayError):
    code = "upstream_timeout"


class SignInRequired(GatewayError):
    """A console action without a live operator sign-in."""

    code = "sign_in_required"


class CsrfRefused(GatewayError):
    """A console action from another origin, or without this sign-in's CSRF token."""

    code = "csrf_refused"
