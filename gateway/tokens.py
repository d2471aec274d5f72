"""Compact signed tokens for the viewer cookie and HLS access tokens.

Format: `<kid>.<base64url fields>.<base64url HMAC-SHA256>`. The key id lets the secret
rotate: new tokens are signed with the current key, tokens signed with a previous key
(GATEWAY_PREVIOUS_SECRETS) still verify until they expire, so nobody is cut off.

Why not JWT here: these are checked on every playlist and segment request, and PyJWT
takes ~58 us per decode on this machine against ~3 us for this. Host-platform bearer
tokens, which must interoperate, do use PyJWT (see identity.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")

_SEPARATOR = "|"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Keyring:
    """Signs with the current key, verifies with any known one.

    Each purpose derives its own key from the secret, so a viewer cookie can never be
    presented as an access token or the other way round.
    """

    def __init__(self, current: bytes, previous: Sequence[bytes] = (), *, purpose: str) -> None:
        derived = [hmac.new(secret, f"gateway/{purpose}".encode(), hashlib.sha256).digest()
                   for secret in (current, *previous)]
        self._keys = {hashlib.sha256(key).hexdigest()[:8]: key for key in reversed(derived)}
        self.current_kid = hashlib.sha256(derived[0]).hexdigest()[:8]
        self._current_key = derived[0]

    def sign(self, *fields: str) -> str:
        if any(_SEPARATOR in field for field in fields):
            raise ValueError("token fields must not contain '|'")
        body = _b64encode(_SEPARATOR.join(fields).encode())
        mac = hmac.new(self._current_key, f"{self.current_kid}.{body}".encode(), hashlib.sha256)
        return f"{self.current_kid}.{body}.{_b64encode(mac.digest())}"

    def verify(self, token: str) -> list[str] | None:
        """The fields, or None for anything forged, truncated, or signed by an unknown key."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 1024 or not token.isascii():
            return None
        kid, body, signature = parts
        key = self._keys.get(kid)
        if key is None:
            return None
        expected = hmac.new(key, f"{kid}.{body}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _b64decode(signature)):
                return None
            return _b64decode(body).decode().split(_SEPARATOR)
        except (ValueError, UnicodeDecodeError):
            return None


class ValidTokenCache(Generic[V]):
    """Remembers what `verify` made of tokens that verified, least recently used first
    out, at most `max_entries`. A token that does not verify is not remembered: junk is
    free to send, and a cache that kept it would grow with every junk token an attacker
    makes up (65,536 junk cookies once cost ~1 GB)."""

    def __init__(self, verify: Callable[[str], V | None], max_entries: int = 65536) -> None:
        self._verify = verify
        self._max_entries = max_entries
        self._known: OrderedDict[str, V] = OrderedDict()

    def __call__(self, token: str) -> V | None:
        known = self._known.get(token)
        if known is not None:
            self._known.move_to_end(token)
            return known
        verified = self._verify(token)
        if verified is not None:
            self._known[token] = verified
            if len(self._known) > self._max_entries:
                self._known.popitem(last=False)
        return verified

    def __len__(self) -> int:
        return len(self._known)
