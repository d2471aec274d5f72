"""Who may fetch: a signed access token per paid session, checked in memory.

A token carries session, stream, expiry and the device's playback grant, signed with a
key id (see tokens.py), so a playlist or segment request costs one HMAC and two dict
lookups: no store round trip (the device count is gate/devices.py's, also in memory).
Expiry is in the token. What a token cannot know, that its session ended early (refund,
revocation, a sweep that found it over), comes from status changes: `session_changed`
records the session as ended until the latest moment any of its tokens could expire.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.errors import NoAccess
from gateway.model import PaymentSession, SessionStatus
from gateway.parsing import is_ascii_int
from gateway.tokens import Keyring, ValidTokenCache

GATE_COOKIE = "gate"
_PRUNE_ABOVE = 1024


@dataclass(frozen=True, slots=True)
class AccessGrant:
    session_id: str
    stream_id: str
    expires_at_ms: int
    grant_id: str  # the device's playback grant (see devices.py)


class AccessGate:
    def __init__(self, secret: bytes, previous_secrets: tuple[bytes, ...], clock: Clock,
                 *, access_seconds: int) -> None:
        self._keys = Keyring(secret, previous_secrets, purpose="hls")
        # A player presents the same token for every playlist and segment: verify once.
        self._claims = ValidTokenCache(self._verify)
        # check-access hands the same session the same token many times: sign once.
        self._tokens = functools.lru_cache(maxsize=65536)(self._sign)
        self._clock = clock
        self._access_ms = access_seconds * 1000
        # session id -> until when its tokens must be refused (after that they are
        # expired on their own and the entry can go).
        self._ended: dict[str, int] = {}

    def token_for(self, session: PaymentSession, grant_id: str) -> str:
        return self._tokens(session.session_id, session.stream_id, session.expires_at_ms,
                            grant_id)

    def _sign(self, session_id: str, stream_id: str, expires_at_ms: int, grant_id: str) -> str:
        return self._keys.sign(session_id, stream_id, str(expires_at_ms), grant_id)

    def check(self, token: str | None, stream_id: str) -> AccessGrant:
        if not token:
            raise NoAccess("no token")
        claims = self._claims(token)
        if claims is None:
            raise NoAccess("invalid token")
        session_id, token_stream_id, expires_at_ms, grant_id = claims
        if token_stream_id != stream_id:
            raise NoAccess("token for another stream")
        if self._clock() >= expires_at_ms:
            raise NoAccess("token expired")
        if session_id in self._ended:
            raise NoAccess("session ended")
        return AccessGrant(session_id, token_stream_id, expires_at_ms, grant_id)

    def _verify(self, token: str) -> tuple[str, str, int, str] | None:
        fields = self._keys.verify(token)
        if fields is None or len(fields) != 4 or not is_ascii_int(fields[2]):
            return None
        return fields[0], fields[1], int(fields[2]), fields[3]

    def session_changed(self, session: PaymentSession) -> None:
        """A status listener: keeps the map of sessions that ended early current."""
        if session.status != SessionStatus.EXPIRED or session.paid_at_ms is None:
            return
        latest_token_expiry_ms = session.paid_at_ms + self._access_ms
        self.end(session.session_id, latest_token_expiry_ms)

    def end(self, session_id: str, until_ms: int) -> None:
        now_ms = self._clock()
        if until_ms <= now_ms:
            return  # its tokens have expired already
        self._ended[session_id] = until_ms
        if len(self._ended) > _PRUNE_ABOVE:
            self._ended = {sid: until for sid, until in self._ended.items() if until > now_ms}

    @property
    def ended_sessions(self) -> int:
        return len(self._ended)

    def is_ended(self, session_id: str) -> bool:
        return session_id in self._ended
