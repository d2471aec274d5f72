"""The HLS gate as one unit: who may fetch (`AccessGate`), where each stream's bytes
come from (its `Origin`, with the shared fetcher and segment cache in front of HTTP
upstreams), the playback URLs a viewer is handed, and `grant()`, which turns a paid
session into the token, those URLs and the access cookie. check-access and the watch
page both call `grant()`; the gate's own route calls `check()` and `origin()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.catalog import Catalog, Stream
from gateway.clock import Clock
from gateway.gate.access import GATE_COOKIE, AccessGate, AccessGrant
from gateway.gate.cache import ByteLru, LocalFiles, UpstreamFetcher
from gateway.gate.origins import DirectoryOrigin, HttpOrigin, LiveLoopOrigin, Origin
from gateway.model import PaymentSession
from gateway.settings import Settings

_TOKEN_SLOT = "TOKEN"


@dataclass(frozen=True, slots=True)
class GateCookie:
    """The access cookie: scoped to one stream's gate path, living as long as access."""

    name: str
    value: str
    path: str
    max_age_s: int


@dataclass(frozen=True, slots=True)
class PlaybackGrant:
    token: str
    # Both forms of the stream's playlist URL: cookie-gated, and with the token in the
    # path for players that send no cookies (tokens are URL-safe as they are).
    urls: dict[str, str]  # {"playbackUrl": ..., "tokenPlaybackUrl": ...}
    cookie: GateCookie


class HlsGate:
    def __init__(self, settings: Settings, catalog: Catalog, clock: Clock,
                 router: web.UrlDispatcher) -> None:
        self.access = AccessGate(settings.secret, settings.previous_secrets, clock,
                                 access_seconds=settings.access_seconds)
        self._settings = settings
        self._catalog = catalog
        self._clock = clock
        # Built once from the named routes: the cookie form, and the token form with a
        # slot for the token.
        self._playback_urls = {stream.stream_id: _playback_url_templates(router, stream)
                               for stream in catalog}
        self._fetcher: UpstreamFetcher | None = None
        self._origins: dict[str, Origin] = {}

    def open(self, http_client: aiohttp.ClientSession) -> None:
        """Make the origins: HTTP ones share the process's pooled client."""
        # One memory budget for every origin's hot objects.
        cache = ByteLru(self._settings.segment_cache_bytes, self._clock)
        self._fetcher = UpstreamFetcher(http_client, cache, self._clock,
                                        self._settings.upstream_timeout_seconds)
        files = LocalFiles(cache, self._clock)
        self._origins = {stream.stream_id: self._origin(stream, http_client, files)
                         for stream in self._catalog}

    async def close(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.close()

    @property
    def fetcher(self) -> UpstreamFetcher:
        assert self._fetcher is not None, "HlsGate.open() first"
        return self._fetcher

    def origin(self, stream_id: str) -> Origin | None:
        return self._origins.get(stream_id)

    def check(self, token: str | None, stream_id: str) -> AccessGrant:
        """May this token fetch this stream's media now? Raises NoAccess if not."""
        return self.access.check(token, stream_id)

    def session_changed(self, session: PaymentSession) -> None:
        """A status listener: a session ended early is refused from now on."""
        self.access.session_changed(session)

    def grant(self, session: PaymentSession, remaining_ms: int) -> PlaybackGrant:
        """What a viewer with paid access is handed: a token for the session, the
        playlist URLs, and the cookie that carries the token."""
        token = self.access.token_for(session)
        cookie_form, token_form = self._playback_urls[session.stream_id]
        return PlaybackGrant(
            token=token,
            urls={"playbackUrl": cookie_form,
                  "tokenPlaybackUrl": token_form.replace(_TOKEN_SLOT, token, 1)},
            cookie=GateCookie(GATE_COOKIE, token, f"/hls/{session.stream_id}/",
                              max(1, remaining_ms // 1000)),
        )

    def _origin(self, stream: Stream, http_client: aiohttp.ClientSession,
                files: LocalFiles) -> Origin:
        if stream.origin_url is not None:
            return HttpOrigin(stream.origin_url, self.fetcher, http_client, self._clock,
                              self._settings.upstream_timeout_seconds)
        assert stream.origin_dir is not None
        if stream.loop_source is not None:
            return LiveLoopOrigin(stream.origin_dir, stream.loop_source, stream.playlist,
                                  files, self._clock)
        return DirectoryOrigin(stream.origin_dir, files, self._clock)


def _playback_url_templates(router: web.UrlDispatcher, stream: Stream) -> tuple[str, str]:
    return (str(router["hls"].url_for(stream_id=stream.stream_id, path=stream.playlist)),
            str(router["hls-token"].url_for(stream_id=stream.stream_id, token=_TOKEN_SLOT,
                                            path=stream.playlist)))
