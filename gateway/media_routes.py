"""Media routes: matched and served outside the app's middleware, and a door past
aiohttp's router for them. The hot path (a request per segment and per playlist
refresh, per viewer) pays for neither.

`MediaResource` is a GET/HEAD route whose handler answers for itself: matched as any
dynamic route, but with no application in the chain aiohttp builds the middleware from,
so a cached playlist costs no middleware frames (~1.8 us of a bare handler's ~23 us,
bench/README.md, issue 15). Its handler finishes its own answers (media headers from a
table, failures through the middleware's own translation). `MediaDoor`, in front of the
application, takes their requests to the handler without aiohttp's router (another 6%
of a cached playlist).

Both lean on aiohttp internals. setup.cfg pins aiohttp below its next minor version,
and tests/test_media_routes.py fails with a clear message when one of them is missing,
so that an upgrade is a deliberate act. The private names, all used here only:
- `UrlDispatcher._get_resource_index_key`: the router's rule for indexing a resource;
- `BaseRequest._match_info`: set as `Application._handle` sets it;
- `DynamicResource._match`: aiohttp's own pattern, for the rare path with escapes;
- `UrlMappingMatchInfo.apps`, as the list `Application._handle` builds the middleware
  chain from (`_MiddlewareSkipped` leaves it empty);
- `web_urldispatcher.MatchedSubAppResource`: a domain's sub-application, which the
  router tries before any path;
- `Server.request_handler`, which `AppRunner.server`'s protocol reads per connection.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web, web_urldispatcher
from aiohttp.typedefs import Handler

from gateway.middlewares import unparsed_request_response


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
        # The gate's handler (handlers/hls.py:serve), or another: bench/bare_in_gateway.py's.
        assert handler is not None, "a media route needs its handler"
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


def add_media_route(router: web.UrlDispatcher, path: str, name: str, handler: Handler
                    ) -> None:
    router.register_resource(MediaResource(path, name=name, handler=handler))


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
        expect = request.headers.get(hdrs.EXPECT)
        if expect is not None:
            if expect.lower() != "100-continue":
                # aiohttp answers any other Expect itself, before the middleware, in
                # plain text that echoes the header (and fails on bytes that are not text).
                return unparsed_request_response(request, 417)
            return await self.routed(request)  # aiohttp's "100 Continue" first
        path = request.rel_url.path_safe  # what the router matches
        if path.startswith(self._prefixes) and request.method in _GET_OR_HEAD:
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
