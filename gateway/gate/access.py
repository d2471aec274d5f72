"""Who may fetch: a signed access token per paid session, checked in memory.

A token carries session, stream, expiry and the device's playback grant, signed with a
key id (see tokens.py), so a playlist or segment request costs one HMAC and two dict
lookups: no store round trip (the count of places is gate/places.py's, also in memory).
Expiry is in the token: the end of the window the payment bought, by the model's one rule
(`tokens_live_until_ms`). What a token cannot know, that its session ended early
(refund, revocation), comes from status changes: `session_changed` records the session
as ended until that same moment, after which its tokens have expired on their own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.errors import NoAccess
from gateway.model import PaymentSession, SessionStatus, tokens_live_until_ms
from gateway.parsing import is_ascii_int
from gateway.tokens import Keyring

_PRUNE_ABOVE = 1024
# Verified tokens remembered: one per playing viewer is plenty (see `check`).
_VERIFIED_MAX = 65536


@dataclass(frozen=True, slots=True)
class AccessGrant:
    session_id: str
    stream_id: str
    expires_at_ms: int
    grant_id: str  # the device's playback grant (see devices.py)


class AccessGate:
    def __init__(self, secret: bytes, previous_secrets: tuple[bytes, ...], clock: Clock
                 ) -> None:
        self._keys = Keyring(secret, previous_secrets, purpose="hls")
        # A player presents the same token for every playlist and segment: verify once,
        # and hand out the same immutable grant every time. Only valid tokens are kept,
        # so garbage cannot push a paying viewer's token out.
        self._verified: dict[str, AccessGrant] = {}
        # check-access hands the same session the same token many times: sign once.
        self._tokens = functools.lru_cache(maxsize=65536)(self._sign)
        self._clock = clock
        # session id -> until when its tokens must be refused (after that they are
        # expired on their own and the entry can go).
        self._ended: dict[str, int] = {}

    def token_for(self, session: PaymentSession, grant_id: str) -> str:
        """A paid session's token for one device's grant, living as the model says."""
        expires_at_ms = tokens_live_until_ms(session)
        if expires_at_ms is None:
            raise ValueError("only a paid session has access tokens")
        return self._tokens(session.session_id, session.stream_id, expires_at_ms, grant_id)

    def _sign(self, session_id: str, stream_id: str, expires_at_ms: int, grant_id: str) -> str:
        return self._keys.sign(session_id, stream_id, str(expires_at_ms), grant_id)

    def check(self, token: str | None, stream_id: str, now_ms: int) -> AccessGrant:
        """Runs on every playlist and segment request: after a token's first request,
        one dict lookup, no signature and no allocation. `now_ms`: the clock's time, read
        once per request by the caller."""
        grant = self._verified.get(token) if token else None
        if grant is None:
            grant = self._verify(token)
        if grant.stream_id != stream_id:
            raise NoAccess("token for another stream")
        if now_ms >= grant.expires_at_ms:
            raise NoAccess("token expired")
        if grant.session_id in self._ended:
            raise NoAccess("session ended")
        return grant

    def _verify(self, token: str | None) -> AccessGrant:
        if not token:
            raise NoAccess("no token")
        fields = self._keys.verify(token)
        if fields is None or len(fields) != 4 or not is_ascii_int(fields[2]):
            raise NoAccess("invalid token")
        grant = AccessGrant(fields[0], fields[1], int(fields[2]), fields[3])
        if len(self._verified) >= _VERIFIED_MAX:
            # The oldest first: a token still in use is verified again, once.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = grant
        return grant

    def session_changed(self, session: PaymentSession) -> None:
        """A status listener: keeps the map of sessions that ended early current."""
        tokens_until_ms = tokens_live_until_ms(session)
        if session.status != SessionStatus.EXPIRED or tokens_until_ms is None:
            return
        self.end(session.session_id, tokens_until_ms)

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
