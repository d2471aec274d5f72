"""The HLS gate as one unit: who may fetch (`AccessGate`, and the count of devices
playing each purchase, `DeviceCounter`), where each stream's bytes come from (its
`Origin`, with the shared fetcher and segment cache in front of HTTP upstreams), the
playback URLs a viewer is handed, and `grant()`, which turns a paid session and the
asking device into that device's token, those URLs and the access cookie. check-access
and the watch page call `grant()` ("watch here instead" calls `watch_here()`); the
gate's own route calls `admit()` and `origin()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs, web

from gateway.catalog import Catalog, Stream
from gateway.clock import Clock
from gateway.device_model import Device, DeviceGrant
from gateway.devices import Devices
from gateway.gate.access import GATE_COOKIE, AccessGate, AccessGrant
from gateway.gate.cache import ByteLru, LocalFiles, UpstreamFetcher
from gateway.gate.devices import DeviceCounter
from gateway.gate.origins import DirectoryOrigin, HttpOrigin, LiveLoopOrigin, Origin
from gateway.model import PaymentSession
from gateway.settings import Settings

_TOKEN_SLOT = "TOKEN"
# Cookie headers remembered with the gate token in them (see `cookie_token`), and the
# longest remembered: 4096 of them take 8 MB at most.
_COOKIE_HEADERS_MAX = 4096
_COOKIE_HEADER_MAX_CHARS = 2048


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
        self.access = AccessGate(settings.secret, settings.previous_secrets, clock)
        # No token alive now outlives this: a window is at most this long, and tokens
        # are only made for a window that has opened.
        self._longest_access_ms = 1000 * max(
            [settings.access_seconds,
             *(stream.access_seconds_or(settings.access_seconds) for stream in catalog)])
        self._settings = settings
        self.trusted_proxies = settings.trusted_proxies  # for client_address, per request
        self._catalog = catalog
        self.clock = clock  # public: read once per request by handlers/hls.py
        # Built once from the named routes: the cookie form, and the token form with a
        # slot for the token.
        self._playback_urls = {stream.stream_id: _playback_url_templates(router, stream)
                               for stream in catalog}
        self._fetcher: UpstreamFetcher | None = None
        self._origins: dict[str, Origin] = {}
        # May this token fetch this stream's media now? Raises NoAccess if not (the
        # device count is `admit()`'s). Bound here rather than wrapped: it runs on
        # every playlist and segment request.
        self.check: Callable[[str | None, str, int], AccessGrant] = self.access.check
        # Requests that passed the check: read when Prometheus scrapes, not a labelled
        # counter's lock per segment.
        self.granted = 0
        self._cookie_tokens: dict[str, str | None] = {}
        self._devices: Devices | None = None
        self._counter: DeviceCounter | None = None

    def open(self, http_client: aiohttp.ClientSession, devices: Devices) -> None:
        """Make the origins (HTTP ones share the process's pooled client) and the count
        of playing devices (which reports to the store behind `devices`)."""
        self._devices = devices
        self._counter = DeviceCounter(devices, self.clock)
        devices.add_listener(self._grant_ended)
        # One memory budget for every origin's hot objects.
        cache = ByteLru(self._settings.segment_cache_bytes)
        self._fetcher = UpstreamFetcher(http_client, cache, self.clock,
                                        self._settings.upstream_timeout_seconds)
        files = LocalFiles(cache, self.clock)
        self._origins = {stream.stream_id: self._origin(stream, http_client, files)
                         for stream in self._catalog}

    async def close(self) -> None:
        if self._counter is not None:
            await self._counter.close()
        if self._fetcher is not None:
            await self._fetcher.close()

    @property
    def fetcher(self) -> UpstreamFetcher:
        assert self._fetcher is not None, "HlsGate.open() first"
        return self._fetcher

    def origin(self, stream_id: str) -> Origin | None:
        return self._origins.get(stream_id)

    def cookie_token(self, request: web.Request) -> str | None:
        """The `gate` cookie's value. aiohttp parses a Cookie header in ~17 us, half a
        cached playlist's whole cost here, and a player sends the same header with
        every request: parse each one once, the same way."""
        raw = request.headers.get(hdrs.COOKIE)
        if raw is None:
            return None
        if raw in self._cookie_tokens:
            return self._cookie_tokens[raw]
        token = request.cookies.get(GATE_COOKIE)
        if len(raw) <= _COOKIE_HEADER_MAX_CHARS:
            if len(self._cookie_tokens) >= _COOKIE_HEADERS_MAX:
                del self._cookie_tokens[next(iter(self._cookie_tokens))]  # the oldest
            self._cookie_tokens[raw] = token
        return token

    @property
    def devices(self) -> Devices:
        assert self._devices is not None, "HlsGate.open() first"
        return self._devices

    @property
    def device_reports(self) -> int:
        return self._counter.store_reports if self._counter is not None else 0

    def admit_now(self, token: str | None, stream_id: str, address: str,
                  now_ms: int) -> AccessGrant | None:
        """`admit()` from what this process knows, without waiting: the grant, or None
        when the device count has to ask the store first (then `await admit()`). Most
        requests end here: a playing device's place is known for a few seconds."""
        access = self.check(token, stream_id, now_ms)
        counter = self._counter
        assert counter is not None, "HlsGate.open() first"
        if counter.counting and not counter.admitted(access.session_id, access.grant_id,
                                                     access.expires_at_ms, address, now_ms):
            return None
        return access

    async def admit(self, token: str | None, stream_id: str, address: str) -> AccessGrant:
        """The whole decision for one playlist, segment, init or key request from a
        client at `address`: `check()`, then the purchase's count of playing devices.
        Raises NoAccess, or DeviceLimit when this would be one place too many."""
        access = self.access.check(token, stream_id, self.clock())
        counter = self._counter
        assert counter is not None, "HlsGate.open() first"
        if counter.counting:
            await counter.admit(access.session_id, access.grant_id, access.expires_at_ms,
                                address)
        return access

    def session_changed(self, session: PaymentSession) -> None:
        """A status listener: a session ended early is refused from now on."""
        self.access.session_changed(session)

    async def grant(self, session: PaymentSession, remaining_ms: int,
                    device: Device) -> PlaybackGrant:
        """What a viewer with paid access is handed on `device`: a token for the session
        and that device's grant (the same one each time it asks), the playlist URLs, and
        the cookie that carries the token. Raises DeviceLimit when the device is new and
        the purchase already plays on as many devices as it may."""
        device_grant = await self.devices.grant_for(session.session_id, device)
        return self._playback(session, remaining_ms, device_grant)

    async def watch_here(self, session: PaymentSession, remaining_ms: int,
                         device: Device) -> PlaybackGrant:
        """"Watch here instead": what `grant()` hands, after the grant that has played
        longest is ended to make room (see Devices.watch_here)."""
        device_grant = await self.devices.watch_here(session.session_id, device)
        return self._playback(session, remaining_ms, device_grant)

    def _grant_ended(self, device_grant: DeviceGrant) -> None:
        # Refused here at once; its tokens live at most the longest window from now.
        if self._counter is not None:
            self._counter.grant_ended(device_grant.grant_id,
                                      self.clock() + self._longest_access_ms)

    def _playback(self, session: PaymentSession, remaining_ms: int,
                  device_grant: DeviceGrant) -> PlaybackGrant:
        token = self.access.token_for(session, device_grant.grant_id)
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
            return HttpOrigin(stream.origin_url, self.fetcher, http_client, self.clock,
                              self._settings.upstream_timeout_seconds)
        assert stream.origin_dir is not None
        if stream.loop_source is not None:
            return LiveLoopOrigin(stream.origin_dir, stream.loop_source, stream.playlist,
                                  files, self.clock)
        return DirectoryOrigin(stream.origin_dir, files, self.clock)


def _playback_url_templates(router: web.UrlDispatcher, stream: Stream) -> tuple[str, str]:
    return (str(router["hls"].url_for(stream_id=stream.stream_id, path=stream.playlist)),
            str(router["hls-token"].url_for(stream_id=stream.stream_id, token=_TOKEN_SLOT,
                                            path=stream.playlist)))
