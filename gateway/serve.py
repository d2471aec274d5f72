"""Serving the app on a socket, with the limits aiohttp does not set by itself:

- a client must send its request headers within GATEWAY_HEADER_TIMEOUT_SECONDS, or its
  connection is closed (a body has its own timeout: handlers.common.read_body);
- at most GATEWAY_MAX_CONNECTIONS connections are open, below the process's descriptor
  limit, which is raised to the hard limit at start-up where the system allows. At the
  cap, an idle keep-alive connection, else the slowest request still sending its
  headers, else the slowest still sending its body makes room for the newcomer (see
  `ConnectionGuard`); only when every connection is busy with an answer is the newcomer
  closed at once. So a flood of slow or idle clients cannot take every descriptor and
  stop the service answering anyone (1,084 slow clients once did, against a limit of
  1,024; 200 idle ones locked out a service capped at 200 for as long as they stayed);
- the media routes are taken straight to their handler (`media_routes.MediaDoor`).

Like the door, it leans on aiohttp internals (setup.cfg pins aiohttp for them, and
tests/test_media_routes.py names any that is gone): `Server._loop` and `Server._kwargs`
(to make aiohttp's protocol as the server would), `RequestHandler._waiter` (aiohttp's own
sign of a connection waiting for its next request), `RequestHandler._current_request`
(whether a request's body is still arriving), both read only when the cap needs room, and
`RequestHandler._request_count` (requests parsed: a request's headers are all in).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web, web_protocol

from gateway.logs import log_event
from gateway.media_routes import open_media_door
from gateway.middlewares import unparsed_request_response
from gateway.settings import Settings

log = logging.getLogger("gateway.serve")


# asyncio accepts up to this many connections in one go (its `backlog`), before the cap
# can close any of them, so it is part of the descriptors kept in reserve.
BACKLOG = 32
# The kernel's queue of connections not yet accepted, set apart from asyncio's batch: a
# show's first second brings thousands of connections at once, and a full queue drops
# their SYNs (the phone retries after 1 s, then 3 s). The kernel caps it at somaxconn.
LISTEN_QUEUE = 4096
# Descriptors kept for everything but client connections: the store, the origins and
# providers, log files, the event loop's own; and one backlog's burst of accepts.
RESERVED_DESCRIPTORS = 64 + 4 * BACKLOG
# An idle keep-alive connection is closed after this (aiohttp's default is an hour).
KEEPALIVE_S = 30.0
# How often connections are checked for overdue request headers.
_CHECK_EVERY_S = 1.0
# After an early answer (408, 413), how long the rest of a body is read before the
# connection is closed (aiohttp's default: 10 s).
LINGER_S = 1.0


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one where allowed; return the soft limit
    now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # not allowed here: live with the current limit
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


def connection_cap(configured: int, descriptor_limit: int) -> int:
    """GATEWAY_MAX_CONNECTIONS, or (0) the descriptor limit less a reserve; never
    above that, whatever is configured."""
    ceiling = max(16, descriptor_limit - max(RESERVED_DESCRIPTORS, descriptor_limit // 10))
    return min(configured, ceiling) if configured else ceiling


_HEAD, _BUSY = "head", "busy"


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, watched: what it is doing and since when.

    A connection is reading a request's headers (`HEAD`, against the header deadline:
    every request, not only the first), or busy with a request (`BUSY`: its body, the
    handler, the answer, and then waiting, kept alive, for the next request's first
    bytes). Nothing here runs per request but a look at the bytes that arrive: what the
    handler is doing is read from aiohttp's protocol only when the cap needs a victim."""

    HEAD, BUSY = _HEAD, _BUSY
    __slots__ = ("_guard", "_inner", "phase", "since_s", "transport")

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self._guard = guard
        self._inner = inner
        self.phase = self.HEAD
        self.since_s = 0.0  # the guard's coarse clock when the phase began
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._inner.connection_made(transport)
        self.since_s = self._guard.now_s
        self._guard.opened(self)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        phase = self.phase
        if phase is _BUSY:
            waiter = inner._waiter  # as _waits_for_a_request(), without its frame
            if waiter is None or waiter.done():
                inner.data_received(data)
                return
            # The next request on a kept-alive connection: its headers have a deadline
            # too. No timer per request (one each, and its cancelling, cost a tenth of a
            # request): the guard looks for overdue headers once a second.
            self.phase, self.since_s = _HEAD, self._guard.now_s
        # The headers are in once aiohttp's parser has counted a request (a parse error
        # counts too: its 400 is on the way). Read from the parser rather than by looking
        # for the blank line: `bytes in bytes` first tries the needle as an int, and the
        # TypeError it makes and drops cost ~1,800 instructions a request.
        parsed = inner._request_count
        inner.data_received(data)
        if inner._request_count != parsed:
            self.phase, self.since_s = _BUSY, self._guard.now_s

    def _waits_for_a_request(self) -> bool:
        # aiohttp's own test of "handler in idle state" (RequestHandler._process_keepalive).
        waiter = self._inner._waiter
        return waiter is not None and not waiter.done()

    def is_idle(self) -> bool:
        """Between requests, nothing left to send: closing it costs its client one
        reconnection."""
        return (self.phase == self.BUSY and self._waits_for_a_request()
                and self.transport is not None
                and self.transport.get_write_buffer_size() == 0)

    def is_sending_body(self) -> bool:
        """A request whose body is still arriving: a slow upload, or a trickle."""
        request = self._inner._current_request
        return (self.phase == self.BUSY and request is not None
                and not request.content.is_eof())

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.closed(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _JsonErrors(web_protocol.RequestHandler):
    """aiohttp's protocol, answering a request it cannot parse in the SPEC's JSON error
    form (aiohttp's own answer is text/plain, names its version in Server, and echoes
    the bad request line back)."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # aiohttp's logs the error, and refuses if part of an answer went out already.
        super().handle_error(request, status, exc, message)
        response = unparsed_request_response(request, status)
        response.force_close()
        return response


def _protocol(server: web.Server) -> web_protocol.RequestHandler:
    """What `server()` makes, as `_JsonErrors`: the same arguments as aiohttp's
    `Server.__call__` (its loop and the runner's keyword arguments)."""
    return _JsonErrors(server, loop=server._loop, **server._kwargs)


class ConnectionGuard:
    """At most `max_connections` open. At the cap a newcomer takes the place of, in
    this order: the connection idle longest (keep-alive, between requests), the one
    that has been sending its request headers longest, the one that has been sending
    its request body longest. A newcomer is refused only when every connection is busy
    with a request whose body has arrived (answers being made or sent, WebSockets)."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self._open: dict[_Guarded, None] = {}  # oldest first
        self.header_timeouts = 0
        self.evicted = 0
        self.refused = 0
        # The loop's clock, read once a second: phases are timed to the second, and
        # reading the loop's clock per request cost more than everything else here.
        self.now_s = 0.0
        self._checking: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def factory(self, make_protocol: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, make_protocol())

    def start(self) -> None:
        """Once listening: start the clock and the check for overdue headers."""
        self._close_overdue()

    def _close_overdue(self) -> None:
        """Once a second: close connections whose request headers are overdue."""
        loop = asyncio.get_running_loop()
        self.now_s = loop.time()
        overdue_before_s = self.now_s - self.header_timeout_s
        for connection in [held for held in self._open if held.phase == _Guarded.HEAD
                           and held.since_s <= overdue_before_s]:
            self.header_timeouts += 1
            connection.close()
        self._checking = loop.call_later(_CHECK_EVERY_S, self._close_overdue)

    def stop(self) -> None:
        if self._checking is not None:
            self._checking.cancel()

    def opened(self, connection: _Guarded) -> None:
        if len(self._open) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                self.refused += 1
                connection.close()
                return
            self.evicted += 1
            victim.close()
            self._open.pop(victim, None)
        self._open[connection] = None

    def _victim(self) -> _Guarded | None:
        idle = slow_head = slow_body = None
        for held in self._open:
            if held.phase == _Guarded.HEAD:
                if slow_head is None or held.since_s < slow_head.since_s:
                    slow_head = held
            elif held.is_idle():
                if idle is None or held.since_s < idle.since_s:
                    idle = held
            elif held.is_sending_body() and (slow_body is None
                                             or held.since_s < slow_body.since_s):
                slow_body = held
        return idle or slow_head or slow_body

    def closed(self, connection: _Guarded) -> None:
        self._open.pop(connection, None)


class _GuardedSite(web.BaseSite):
    def __init__(self, runner: web.AppRunner, host: str, port: int,
                 guard: ConnectionGuard, inherited_fd: int | None = None) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._where = (host, port)
        self._guard = guard
        # A worker of GATEWAY_WORKERS accepts on its supervisor's socket (workers.py).
        self._inherited_fd = inherited_fd

    @property
    def name(self) -> str:
        host, port = self._where
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._guard.factory(lambda: _protocol(server))
        loop = asyncio.get_running_loop()
        if self._inherited_fd is not None:
            sock = socket.socket(fileno=self._inherited_fd)
            self._server = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
        else:
            self._server = await loop.create_server(factory, *self._where,
                                                    reuse_address=True, backlog=BACKLOG)
        for listening in self._server.sockets:
            # listen() again on a duplicate: asyncio's own wrapper hides it.
            with socket.socket(fileno=os.dup(listening.fileno())) as duplicate:
                duplicate.listen(LISTEN_QUEUE)


def _quiet_exhaustion(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Out of descriptors anyway (the cap makes it rare): asyncio pauses accepting for a
    second by itself; say so in one line, not a traceback."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        log_event(log, "descriptors_exhausted", level=logging.WARNING, error=str(exc))
        return
    loop.default_exception_handler(context)


async def serve(app: web.Application, settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully (WebSockets get 1001)."""
    descriptors = raise_descriptor_limit()
    guard = ConnectionGuard(connection_cap(settings.max_connections, descriptors),
                            settings.header_timeout_seconds)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10,
                           keepalive_timeout=KEEPALIVE_S, lingering_time=LINGER_S)
    try:
        await runner.setup()
        open_media_door(runner)
        site = _GuardedSite(runner, settings.host, settings.port, guard, settings.worker_fd)
        await site.start()
        guard.start()
        log_event(log, "serving", url=site.name, maxConnections=guard.max_connections,
                  descriptorLimit=descriptors)
        if settings.worker_index is None:  # a supervisor says it for its workers
            print(f"======== Running on {site.name} ========", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_exhaustion)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        guard.stop()
        await runner.cleanup()
