"""Who is asking (SPEC, Identity). The browser never tells us who it is: we tell it.

In order: `X-Api-Key` (server-to-server, may act for any userId), a host-platform HS256
bearer JWT (when GATEWAY_PLATFORM_JWT_SECRET is set), then our signed `viewer` cookie,
issued on first contact.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import jwt

from gateway.clock import Clock
from gateway.errors import InvalidRequest, NotYours, Unauthenticated
from gateway.ids import USER_ID
from gateway.settings import Settings
from gateway.tokens import Keyring, ValidTokenCache

VIEWER_COOKIE = "viewer"
VIEWER_COOKIE_MAX_AGE_SECONDS = 400 * 86400  # browsers cap cookie lifetime at 400 days


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: str | None  # None only for a server-to-server caller
    via: str  # "api_key" | "bearer" | "cookie" | "new"

    @property
    def is_server(self) -> bool:
        return self.via == "api_key"


class IdentityResolver:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._api_key = settings.api_key.encode() if settings.api_key else None
        self._jwt_secret = settings.platform_jwt_secret
        self._jwt_issuer = settings.platform_jwt_issuer
        self._jwt_audience = settings.platform_jwt_audience
        self._cookies = Keyring(settings.secret, settings.previous_secrets, purpose="viewer")
        self._clock = clock
        # A viewer sends the same cookie with every request: check its HMAC once.
        self._cookie_user = ValidTokenCache(self._verify_cookie)

    def is_operator(self, *, api_key: str | None, authorization: str | None) -> bool:
        """The API key, as `X-Api-Key` or as a bearer token (what Prometheus can send).
        Never resolves a viewer: a scraper must not be handed a viewer cookie."""
        if authorization is not None and api_key is None:
            scheme, _, credentials = authorization.partition(" ")
            api_key = credentials.strip() if scheme.lower() == "bearer" else None
        return api_key is not None and self._is_api_key(api_key)

    def _is_api_key(self, candidate: str) -> bool:
        # A key is printable ASCII; aiohttp hands other bytes over as lone surrogates,
        # which could not even be encoded to compare.
        return (self._api_key is not None and candidate.isascii()
                and hmac.compare_digest(candidate.encode(), self._api_key))

    def resolve(self, *, api_key: str | None, authorization: str | None,
                viewer_cookie: str | None) -> Viewer:
        if api_key is not None:
            if not self._is_api_key(api_key):
                raise Unauthenticated()
            return Viewer(None, "api_key")
        if authorization is not None and self._jwt_secret is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer":
                return Viewer(self._verify_platform_token(token.strip()), "bearer")
        if viewer_cookie is not None:
            user_id = self._cookie_user(viewer_cookie)
            if user_id is not None:
                return Viewer(user_id, "cookie")
        return Viewer(f"v_{secrets.token_urlsafe(16)}", "new")

    def _verify_cookie(self, cookie: str) -> str | None:
        fields = self._cookies.verify(cookie)
        if fields and len(fields) == 2 and USER_ID.fullmatch(fields[0]):
            return fields[0]
        return None

    def _verify_platform_token(self, token: str) -> str:
        assert self._jwt_secret is not None
        try:
            claims = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=["HS256"],
                issuer=self._jwt_issuer,
                audience=self._jwt_audience,
                options={"require": ["sub", "exp"], "verify_aud": self._jwt_audience is not None},
                leeway=30,
            )
        except jwt.PyJWTError:
            raise Unauthenticated() from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not USER_ID.fullmatch(subject):
            raise Unauthenticated()
        return subject

    def cookie_for(self, user_id: str) -> str:
        return self._cookies.sign(user_id, str(self._clock() // 1000))


def acting_user(viewer: Viewer, requested_user_id: str | None) -> str:
    """The userId a request acts for: the caller's own, or any for a server caller."""
    if requested_user_id is not None and not USER_ID.fullmatch(requested_user_id):
        raise InvalidRequest(detail="userId", field="userId")
    if viewer.is_server:
        if requested_user_id is None:
            raise InvalidRequest(detail="userId is required with an API key", field="userId")
        return requested_user_id
    assert viewer.user_id is not None
    if requested_user_id is not None and requested_user_id != viewer.user_id:
        raise NotYours()
    return viewer.user_id


def session_owner(viewer: Viewer, requested_user_id: str | None) -> str | None:
    """Whose sessions a request may see: the viewer's own; for a server caller, the
    userId it names, or anyone's (None)."""
    if viewer.is_server:
        if requested_user_id is not None and not USER_ID.fullmatch(requested_user_id):
            raise InvalidRequest(detail="userId", field="userId")
        return requested_user_id
    return acting_user(viewer, requested_user_id)
