"""The HLS gate as one unit: who may fetch (`AccessGate`, and the count of places
playing each purchase, `PlaceCounter`), where each stream's bytes come from (its
`Origin`, with the shared fetcher and segment cache in front of HTTP upstreams), the
playback URLs a viewer is handed, and `grant()`, which turns a paid session and the
asking device into that device's token, those URLs and the access cookie.

It is the one owner of the access decision: a handler reads a request into a
`MediaRequest` (stream, token, address, path, time: no HTTP left in it) and `admit()`
decides, counts, logs and meters, for the Python gate (/hls/) and for nginx's
(/gate/auth) alike. check-access and the watch page call `grant()` ("watch here
instead" calls `watch_here()`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from gateway.catalog import Catalog, Stream
from gateway.clock import Clock
from gateway.delivery import urls as delivery_urls
from gateway.device_model import Device, DeviceGrant
from gateway.devices import Devices
from gateway.errors import DeviceLimit, NoAccess, UnknownStream
from gateway.gate import urls
from gateway.gate.access import AccessGate, AccessGrant
from gateway.gate.cache import ByteLru, LocalFiles, UpstreamFetcher
from gateway.gate.origins import DirectoryOrigin, HttpOrigin, LiveLoopOrigin, Origin
from gateway.gate.paths import MediaPath, media_path
from gateway.gate.places import PlaceCounter
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.model import PaymentSession
from gateway.settings import Settings

log = logging.getLogger("gateway.gate")

# Keys delivery: in this last stretch of a window that a paid one follows, a device is
# handed the next window's token (see `HlsGate.grant`). The watch page asks then.
HANDOVER_MS = 60_000
# Cookie headers remembered with the gate token in them (see `cookie_token`), and the
# longest remembered: 4096 of them take 8 MB at most.
_COOKIE_HEADERS_MAX = 4096
_COOKIE_HEADER_MAX_CHARS = 2048


# One playlist, segment, init or key request, as a handler read it, with no HTTP left:
# (stream_id, path_token, cookie_token, address, path, now_ms). The path-token form's
# token; the `gate` cookie's (`HlsGate.cookie_token`, None with a path token); the
# viewer's address (behind trusted proxies too); the media path asked for, not yet
# checked; the clock, read once for the whole request. A plain tuple, unpacked where it
# is read: one is made per media request, and a NamedTuple's making, field reads and
# freeing cost ~3,000 instructions of a cached playlist's ~240,000 (bench/README.md).
MediaRequest = tuple[str, str | None, str | None, str, str, int]


# Who may fetch what, from where: a plain tuple (made on every media request; a
# NamedTuple costs ten times as much to make).
Admitted = tuple[Origin, AccessGrant, MediaPath]


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
                 metrics: Metrics) -> None:
        self.access = AccessGate(settings.secret, settings.previous_secrets, clock)
        # No token alive now outlives this: a window is at most this long, and tokens
        # are only made for a window that has opened.
        self._longest_access_ms = 1000 * max(
            [settings.access_seconds,
             *(stream.access_seconds_or(settings.access_seconds) for stream in catalog)])
        self._settings = settings
        self.trusted_proxies = settings.trusted_proxies  # for client_address, per request
        self._catalog = catalog
        self.clock = clock  # public: read once per request by the handlers
        self._metrics = metrics
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
        self._counter: PlaceCounter | None = None
        # What a viewer is handed. Keys delivery: the playlist under /media/ (public,
        # encrypted), and the cookie where the keys are; the media needs none.
        self._keys_delivery = settings.delivery == "keys"
        self._playback_urls = (delivery_urls.playback_urls if self._keys_delivery
                               else urls.playback_urls)
        self._cookie_path = (delivery_urls.keys_path if self._keys_delivery
                             else urls.stream_path)

    def open(self, http_client: aiohttp.ClientSession, devices: Devices) -> None:
        """Make the origins (HTTP ones share the process's pooled client) and the count
        of playing devices (which reports to the store behind `devices`)."""
        self._devices = devices
        self._counter = PlaceCounter(devices, self.clock)
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

    def cookie_token(self, cookie_header: str | None) -> str | None:
        """The `gate` cookie's token in a Cookie header (urls.gate_cookie_token). A
        player sends the same header with every request: each is read once."""
        if cookie_header is None:
            return None
        if cookie_header in self._cookie_tokens:
            return self._cookie_tokens[cookie_header]
        token = urls.gate_cookie_token(cookie_header)
        if len(cookie_header) <= _COOKIE_HEADER_MAX_CHARS:
            if len(self._cookie_tokens) >= _COOKIE_HEADERS_MAX:
                del self._cookie_tokens[next(iter(self._cookie_tokens))]  # the oldest
            self._cookie_tokens[cookie_header] = token
        return token

    @property
    def devices(self) -> Devices:
        assert self._devices is not None, "HlsGate.open() first"
        return self._devices

    @property
    def device_reports(self) -> int:
        return self._counter.store_reports if self._counter is not None else 0

    def admit_now(self, asked: MediaRequest) -> Admitted | None:
        """The whole decision from what this process knows, without waiting: the
        grant, or None when the count of places has to ask the store first (then
        `await admit()`). Most requests end here: a playing device's place is known for
        a few seconds. Raises what `admit()` raises."""
        stream_id, path_token, cookie_token, address, path, now_ms = asked
        origin = self._origins.get(stream_id)
        if origin is None:
            raise UnknownStream()
        try:
            access = self.check(path_token or cookie_token, stream_id, now_ms)
            counter = self._counter
            assert counter is not None, "HlsGate.open() first"
            if counter.counting and not counter.admitted(
                    access.session_id, access.grant_id, access.expires_at_ms, address, now_ms):
                return None
        except NoAccess as refused:
            self._refused(asked, refused)
            raise
        self.granted += 1
        return origin, access, media_path(path)

    async def admit(self, asked: MediaRequest) -> Admitted:
        """The one access decision for a playlist, segment, init or key request, for
        this gate and for nginx's: a known stream; a valid token for it (the path form
        first, else the cookie: signature, stream, expiry, ended sessions); room for
        this place among the purchase's playing devices; an allowed path. In memory:
        the count of places asks the store only about a place new to this process or
        last reported a few seconds ago. Refusals are logged and counted here. Raises
        UnknownStream, NoAccess, DeviceLimit or InvalidRequest (the path)."""
        admitted = self.admit_now(asked)
        if admitted is not None:
            return admitted
        stream_id, path_token, cookie_token, address, path, now_ms = asked
        origin = self._origins[stream_id]
        counter = self._counter
        assert counter is not None, "HlsGate.open() first"
        try:
            # Checked again: the time has not moved, but an ended session may have.
            access = self.check(path_token or cookie_token, stream_id, now_ms)
            await counter.admit(access.session_id, access.grant_id, access.expires_at_ms,
                                address)
        except (NoAccess, DeviceLimit) as refused:
            self._refused(asked, refused)
            raise
        self.granted += 1
        return origin, access, media_path(path)

    def _refused(self, asked: MediaRequest, refused: NoAccess | DeviceLimit) -> None:
        reason = str(refused.params.get("reason", refused.code))
        stream_id, path_token, _, address, _, _ = asked
        log_event(log, "gate_refused", streamId=stream_id, reason=reason,
                  form="path" if path_token else "cookie", client=address)
        self._metrics.gate_refusals.labels(reason).inc()

    def is_ended(self, session_id: str) -> bool:
        """Whether this gate refuses the session's tokens as ended early."""
        return self.access.is_ended(session_id)

    def session_changed(self, session: PaymentSession) -> None:
        """A status listener: a session ended early is refused from now on."""
        self.access.session_changed(session)

    async def grant(self, session: PaymentSession, remaining_ms: int,
                    device: Device, following: PaymentSession | None = None
                    ) -> PlaybackGrant:
        """What a viewer with paid access is handed on `device`: a token for the session
        and that device's grant (the same one each time it asks), the playlist URLs, and
        the cookie that carries the token. Raises DeviceLimit when the device is new and
        the purchase already plays on as many devices as it may. `following`: the paid
        window that continues this one, if any (see `_holding`)."""
        session, remaining_ms = self._holding(session, remaining_ms, following)
        device_grant = await self.devices.grant_for(session.session_id, device)
        return self._playback(session, remaining_ms, device_grant)

    async def watch_here(self, session: PaymentSession, remaining_ms: int,
                         device: Device, following: PaymentSession | None = None
                         ) -> PlaybackGrant:
        """"Watch here instead": what `grant()` hands, after the grant that has played
        longest is ended to make room (see Devices.watch_here)."""
        session, remaining_ms = self._holding(session, remaining_ms, following)
        device_grant = await self.devices.watch_here(session.session_id, device)
        return self._playback(session, remaining_ms, device_grant)

    def _holding(self, session: PaymentSession, remaining_ms: int,
                 following: PaymentSession | None) -> tuple[PaymentSession, int]:
        """Whose token the device should hold now. Keys delivery: in the last
        HANDOVER_MS of a window that a paid one follows, the following window's. A
        player asks for a key only when the stream's key changes, and the cookie it
        sends cannot change by itself at the seam: had it the first window's token, a
        key asked for just after the end would be refused (a gap, however short). The
        token is good from now (tokens carry their end, not their start), so at most
        HANDOVER_MS of the first window are played on the second's ticket."""
        if (not self._keys_delivery or following is None
                or remaining_ms > HANDOVER_MS):
            return session, remaining_ms
        return following, following.remaining_ms(self.clock())

    def _grant_ended(self, device_grant: DeviceGrant) -> None:
        # Refused here at once; its tokens live at most the longest window from now.
        if self._counter is not None:
            self._counter.grant_ended(device_grant.grant_id,
                                      self.clock() + self._longest_access_ms)

    def _playback(self, session: PaymentSession, remaining_ms: int,
                  device_grant: DeviceGrant) -> PlaybackGrant:
        token = self.access.token_for(session, device_grant.grant_id)
        stream = self._catalog.get(session.stream_id)
        assert stream is not None, "a paid session of a stream no longer sold"
        return PlaybackGrant(
            token=token,
            urls=self._playback_urls(stream.stream_id, stream.playlist, token),
            cookie=GateCookie(urls.GATE_COOKIE, token, self._cookie_path(stream.stream_id),
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

