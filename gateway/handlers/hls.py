"""The HLS gate: /hls/{streamId}/{path} (cookie) and /hls/{streamId}/t/{token}/{path}.

Checked on every request, in memory: token signature, stream, expiry, ended sessions,
and the purchase's count of playing devices (gate/devices.py).
No valid access: 403 with `Cache-Control: private, no-store` (set for every error).

These two routes are the hot path (a request per segment and per playlist refresh, per
viewer), and skip the app's middleware: `MediaResource` matches them with no app in the
chain aiohttp builds the middleware from, so a cached playlist costs no middleware
frames (~1.8 us of a bare handler's ~23 us, bench/README.md, issue 15). `serve` finishes
its own answers instead: media headers come from a table (origins.media_headers), and
its failures go through the middleware's own translation (`failure_response`). Should
a later aiohttp build the chain some other way, the middleware simply runs again: the
answers stay the same, only slower. `MediaDoor`, in front of the application, takes
their requests to `serve` without aiohttp's router (another 6% of a cached playlist).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web, web_urldispatcher
from aiohttp.typedefs import Handler

from gateway.errors import DeviceLimit, NoAccess, UnknownStream
from gateway.gate.access import AccessGrant
from gateway.gate.hls_gate import HlsGate
from gateway.gate.origins import Origin
from gateway.gate.paths import MediaPath, media_path
from gateway.handlers.common import client_address
from gateway.keys import GATE, METRICS
from gateway.logs import log_event
from gateway.middlewares import failure_response

log = logging.getLogger("gateway.gate")


class _MiddlewareSkipped(web.UrlMappingMatchInfo):
    """A match in no application's middleware chain (aiohttp builds the chain from
    `apps`); `request.app` still works (`current_app`), `request.config_dict` does not
    (it walks `apps`): nothing on the media path reads it."""

    __slots__ = ()
    # A class attribute, not a property: aiohttp reads it on every request.
    apps: tuple[web.Application, ...] = ()


_NOTHING_TO_ALLOW: set[str] = set()


class MediaResource(web.DynamicResource):
    """A GET (and HEAD) route whose handler answers for itself: matched as any dynamic
    route, but outside the middleware (see the module's docstring).

    Matched by splitting the path at its slashes rather than by aiohttp's pattern: on a
    path-token URL (~170 characters) the pattern's character classes cost ~0.7 us, a
    fifth of what the gate adds to a cached playlist. The same paths match, with the
    same values (tests/handlers/test_hls.py checks it against aiohttp's own)."""

    _ALLOWED_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})

    def __init__(self, path: str, *, name: str, handler: Handler | None = None) -> None:
        super().__init__(path, name=name)
        handler = handler or serve  # another handler: bench/bare_in_gateway.py's
        self._route = self.add_route(hdrs.METH_GET, handler)
        self.add_route(hdrs.METH_HEAD, handler)
        # "/hls/{stream_id}/t/{token}/{path:.+}": literal segments and one-segment
        # variables; a last variable may take the rest of the path (":.+").
        segments = path.split("/")
        takes_rest = segments[-1].endswith(":.+}")
        if any(":" in segment for segment in segments[:-1]) or (
                ":" in segments[-1] and not takes_rest):
            raise ValueError(f"{path}: only a last variable may have a pattern, and only .+")
        self._max_split = len(segments) - 1 if takes_rest else -1
        self._segment_count = len(segments)
        literals = [(index, segment) for index, segment in enumerate(segments)
                    if not segment.startswith("{")]
        variables = [(index, segment[1:-1].removesuffix(":.+"))
                     for index, segment in enumerate(segments) if segment.startswith("{")]
        self._literal_values = tuple(segment for _, segment in literals)
        self._literals_of = _picker([index for index, _ in literals])
        self._names = tuple(name for _, name in variables)
        self._values_of = _picker([index for index, _ in variables])

    def _match(self, path: str) -> dict[str, str] | None:
        if "%" in path or "{" in path or "}" in path or "\n" in path:
            # Rare, and never in a URL the gate hands out: aiohttp's own pattern decides
            # (a variable has no braces, ".+" no newline) and unquotes.
            return super()._match(path)
        parts = path.split("/", self._max_split)
        if len(parts) != self._segment_count or self._literals_of(parts) != self._literal_values:
            return None
        values = self._values_of(parts)
        if not all(values):  # every variable matches one character or more
            return None
        return dict(zip(self._names, values, strict=True))

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None,
                                                           set[str]]:
        match_info = self.matched(request.rel_url.path_safe)
        if match_info is None:
            return None, set()
        if request.method not in self._ALLOWED_METHODS:
            return None, set(self._ALLOWED_METHODS)  # 405 with Allow, as any route
        # The router reads the allowed methods only when nothing matched: none to build.
        return match_info, _NOTHING_TO_ALLOW

    def matched(self, path_safe: str) -> web.UrlMappingMatchInfo | None:
        """`resolve()` for a GET or HEAD, without a coroutine: for `MediaDoor`."""
        match_dict = self._match(path_safe)
        return None if match_dict is None else _MiddlewareSkipped(match_dict, self._route)


def _picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """The items at `indexes`, as a tuple, in C (operator.itemgetter)."""
    if len(indexes) == 1:
        only = indexes[0]
        return lambda parts: (parts[only],)
    return operator.itemgetter(*indexes)


def add_media_route(router: web.UrlDispatcher, path: str, name: str) -> None:
    router.register_resource(MediaResource(path, name=name))


RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class MediaDoor:
    """The server's request handler: a media route's request goes straight to its
    handler, everything else to the application (aiohttp's `Application._handle`).

    aiohttp's way to a handler costs a cached playlist ~15,000 instructions, 6% of it,
    even for a route outside the middleware: the router tries each prefix of the
    ~170-character token URL against its index, builds the match in a coroutine, then
    looks the middleware chain up. Here a media path is matched once, by the very
    resources in the route table, in the router's order, and the request gets the
    match info the application would give it (`request.app`, `match_info` and the
    response signals work as there; `config_dict` no more than there). Anything else,
    or anything unusual for a media route (a method other than GET or HEAD, an Expect
    header, no match), takes the application's own path, so answers are the same
    either way (tests/handlers/test_hls.py sends the same requests both ways).

    Opened on the server by `open_media_door()`, where a server is made: `gateway.serve`
    and the tests' client fixtures."""

    def __init__(self, app: web.Application, routed: RequestHandler) -> None:
        router = app.router
        # The key the router indexes a resource under, by the router's own rule.
        index_key = router._get_resource_index_key
        media = [resource for resource in router.resources()
                 if isinstance(resource, MediaResource)]
        prefixes = {index_key(resource) + "/" for resource in media}
        for resource in router.resources():
            key = index_key(resource) + "/"
            if not isinstance(resource, MediaResource) and (
                    key.startswith(tuple(prefixes))
                    # A domain's sub-application: the router tries it before any path.
                    or isinstance(resource, web_urldispatcher.MatchedSubAppResource)):
                # The router would try it before (or with) the media routes.
                raise ValueError(f"{resource!r} is under a media route's prefix, or "
                                 "tried before it")
        # The router's order: the longest prefix first, then the order of registration.
        self._media = tuple(sorted(media, key=lambda resource: -len(index_key(resource))))
        self._prefixes = tuple(prefixes)
        self._app = app
        self.routed = routed
        self.taken = 0  # requests taken straight to a media handler

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.path_safe  # what the router matches
        if (path.startswith(self._prefixes) and request.method in _GET_OR_HEAD
                and hdrs.EXPECT not in request.headers):
            for resource in self._media:
                match_info = resource.matched(path)
                if match_info is not None:
                    match_info.add_app(self._app)
                    match_info.freeze()
                    request._match_info = match_info  # as Application._handle does
                    self.taken += 1
                    return await match_info.handler(request)
        return await self.routed(request)


_GET_OR_HEAD = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})


def open_media_door(runner: web.AppRunner) -> None:
    """Put a `MediaDoor` in front of the runner's application, for connections made
    from now on (aiohttp's protocol reads the server's handler when a connection is
    made): after `runner.setup()`, before the first connection. Again on the same
    runner: nothing more."""
    server = runner.server
    if server is None:
        raise RuntimeError("open_media_door: runner.setup() first")
    if not isinstance(server.request_handler, MediaDoor):
        # The runner's request factory makes web.Request objects, which MediaDoor takes.
        server.request_handler = MediaDoor(runner.app, server.request_handler)  # type: ignore[assignment]


Admitted = tuple[Origin, AccessGrant, MediaPath]


async def serve(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    try:
        gate = request.app[GATE]
        now_ms = gate.clock()  # once per request: every check below reads the same time
        stream_id, path_token, path = match["stream_id"], match.get("token"), match["path"]
        # Without a coroutine or an await unless the device count must ask the store.
        origin, grant, media = (
            admit_now(request, gate, stream_id, path_token, path, now_ms)
            or await _admit_asking_store(request, gate, stream_id, path_token, path))
        # From memory, again without an await: most requests end here.
        response = origin.cached(request, media, grant, now_ms)
        if response is not None:
            return response
        return await origin.serve(request, media, grant)
    except Exception as exc:  # what the middleware would do, were it in the chain
        return failure_response(request, exc)


async def admit(request: web.Request, stream_id: str, path_token: str | None,
                path: str) -> Admitted:
    """The one access decision, for this gate and for nginx's (/gate/auth): a known
    stream, a valid token for it (path form first, else the cookie: signature, stream,
    expiry, ended sessions), room for this place among the purchase's playing devices
    (the viewer's address from `client_address(request)`, behind nginx as well), and an
    allowed path. In memory: the device count asks the store only about a place new to
    this process or last reported a few seconds ago, never once per request. Refusals
    are logged and counted here, whoever asked."""
    gate = request.app[GATE]
    return (admit_now(request, gate, stream_id, path_token, path, gate.clock())
            or await _admit_asking_store(request, gate, stream_id, path_token, path))


async def _admit_asking_store(request: web.Request, gate: HlsGate, stream_id: str,
                              path_token: str | None, path: str) -> Admitted:
    """`admit()` once `admit_now()` could not decide: the device count asks the store."""
    origin, token, address = _target(request, gate, stream_id, path_token)
    try:
        grant = await gate.admit(token, stream_id, address)  # after asking the store
    except (NoAccess, DeviceLimit) as refused:
        _refused(request, refused, stream_id, path_token, address)
        raise
    gate.granted += 1
    return origin, grant, media_path(path)


def admit_now(request: web.Request, gate: HlsGate, stream_id: str, path_token: str | None,
              path: str, now_ms: int) -> Admitted | None:
    """`admit()` from what this process knows, without waiting: None when the device
    count has to ask the store first (a place new to this process)."""
    origin, token, address = _target(request, gate, stream_id, path_token)
    try:
        grant = gate.admit_now(token, stream_id, address, now_ms)
    except (NoAccess, DeviceLimit) as refused:
        _refused(request, refused, stream_id, path_token, address)
        raise
    if grant is None:
        return None
    gate.granted += 1
    return origin, grant, media_path(path)


def _target(request: web.Request, gate: HlsGate, stream_id: str,
            path_token: str | None) -> tuple[Origin, str | None, str]:
    """The stream's origin, the token presented (path form first, else the cookie) and
    the client's address."""
    origin = gate.origin(stream_id)  # one per catalog stream
    if origin is None:
        raise UnknownStream()
    return (origin, path_token or gate.cookie_token(request),
            client_address(request, gate.trusted_proxies))


def _refused(request: web.Request, refused: NoAccess | DeviceLimit, stream_id: str,
             path_token: str | None, address: str) -> None:
    reason = str(refused.params.get("reason", refused.code))
    log_event(log, "gate_refused", streamId=stream_id, reason=reason,
              form="path" if path_token else "cookie", client=address)
    request.app[METRICS].gate_refusals.labels(reason).inc()
