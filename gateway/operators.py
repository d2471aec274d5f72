"""Who may use the operator's console, free of HTTP: sign-in with the API key, the signed
sign-in cookie's contents, CSRF tokens, and throttled guessing.

The key is `GATEWAY_API_KEY`, the operator's existing secret; the console exists only
when it is set. Every sign-in also names the person, so that each action in the log says
who did it, not just "someone with the key".
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.store.base import SignIns
from gateway.tokens import Keyring

OPERATOR_NAME = re.compile(r"[^\x00-\x1f\x7f|]{1,40}")
# A working day: long enough not to be asked again before the shift ends, short enough
# that a cookie left on a shared computer dies overnight.
SIGN_IN_SECONDS = 10 * 3600
# Guessing a 24+ character key is hopeless anyway; this keeps the log readable and the
# CPU free: five wrong keys from one address, then wait out the rest of 15 minutes.
MAX_FAILED_SIGN_INS = 5
FAILED_SIGN_IN_WINDOW_MS = 15 * 60 * 1000
_MAX_TRACKED_ADDRESSES = 10_000


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    nonce: str  # this sign-in's id: the CSRF token is derived from it
    expires_at_ms: int


class OperatorAuth:
    def __init__(self, api_key: str, secret: bytes, previous_secrets: tuple[bytes, ...],
                 clock: Clock) -> None:
        self._api_key = api_key.encode()
        # Bound to the key too: changing GATEWAY_API_KEY signs every operator out.
        key_id = hashlib.sha256(self._api_key).hexdigest()[:16]
        self._cookies = Keyring(secret, previous_secrets, purpose=f"operator/{key_id}")
        self._csrf = Keyring(secret, previous_secrets, purpose=f"operator-csrf/{key_id}")
        self._clock = clock

    def key_matches(self, candidate: str) -> bool:
        # A key is printable ASCII; a form may carry anything at all.
        return candidate.isascii() and hmac.compare_digest(candidate.encode(), self._api_key)

    def sign_in(self, name: str) -> tuple[Operator, str]:
        """A new sign-in and its cookie value."""
        operator = Operator(name, secrets.token_urlsafe(16),
                            self._clock() + SIGN_IN_SECONDS * 1000)
        return operator, self._cookies.sign(operator.name, operator.nonce,
                                            str(operator.expires_at_ms))

    def operator(self, cookie: str | None) -> Operator | None:
        """Who the cookie says, if it is ours, whole, and not past its working day."""
        fields = self._cookies.verify(cookie) if cookie else None
        if fields is None or len(fields) != 3 or not fields[2].isdigit():
            return None
        operator = Operator(fields[0], fields[1], int(fields[2]))
        if self._clock() >= operator.expires_at_ms:
            return None
        return operator

    def csrf_token(self, operator: Operator) -> str:
        return self._csrf.sign(operator.nonce)

    def csrf_valid(self, operator: Operator, token: str | None) -> bool:
        fields = self._csrf.verify(token) if token else None
        return fields is not None and hmac.compare_digest(fields[0], operator.nonce)


class ConsoleSignIns:
    """Who is signed in: a cookie `OperatorAuth` accepts, of a sign-in not ended since.
    Signing out ends the sign-in itself, not one browser's cookie: the store keeps it
    ended, for every instance, until the cookie would have expired anyway."""

    def __init__(self, auth: OperatorAuth, ended: SignIns, clock: Clock) -> None:
        self._auth = auth
        self._ended = ended
        self._clock = clock

    async def operator(self, cookie: str | None) -> Operator | None:
        operator = self._auth.operator(cookie)
        if operator is None or await self._ended.is_ended(operator.nonce, self._clock()):
            return None
        return operator

    async def sign_out(self, operator: Operator) -> None:
        await self._ended.end(operator.nonce, operator.expires_at_ms, self._clock())


class SignInThrottle:
    """Failed sign-ins per client address in a sliding window. Per instance, in memory:
    behind N instances a guesser gets N times the attempts, still hopeless against a
    24+ character key."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._failures: dict[str, list[int]] = {}

    def retry_after_s(self, address: str) -> int:
        """0 when this address may try now, else the seconds until it may."""
        recent = self._recent(address)
        if len(recent) < MAX_FAILED_SIGN_INS:
            return 0
        return max(1, -(-(recent[0] + FAILED_SIGN_IN_WINDOW_MS - self._clock()) // 1000))

    def failed(self, address: str) -> None:
        if len(self._failures) >= _MAX_TRACKED_ADDRESSES:
            self._failures = {addr: times for addr in list(self._failures)
                              if (times := self._recent(addr))}
        self._failures[address] = [*self._recent(address), self._clock()]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str) -> list[int]:
        since_ms = self._clock() - FAILED_SIGN_IN_WINDOW_MS
        return [at for at in self._failures.get(address, ()) if at > since_ms]
