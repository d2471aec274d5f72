"""Fetching from an HTTP origin on behalf of many viewers.

- Single flight: concurrent requests for the same upstream object share one upstream
  request. Its body is streamed to all of them as it arrives (nobody waits for the whole
  object before getting the first byte).
- A bounded in-memory cache (size limit in bytes) keeps hot segments, and live playlists
  for a second, so a thousand viewers of one stream cost the origin about one request per
  object.
- While an expired object is fetched again, every other request for it is answered from
  the copy that expired (as nginx's `proxy_cache_use_stale updating`), not queued behind
  the fetch: a live playlist's viewers do not all wait on the origin once a second.
- Bounded time: connect, read and total timeouts; redirects are not followed, so the gate
  never contacts anything but the stream's own origin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from gateway.clock import Clock
from gateway.errors import GatewayError, MediaNotFound, UpstreamFailed, UpstreamTimeout
from gateway.parsing import is_ascii_int

CHUNK_BYTES = 64 * 1024
# A name the origin does not have (404/410) is remembered this long, so a viewer asking
# for it again and again costs the origin one request, not one each.
NOT_FOUND_CACHE_MS = 5_000


def upstream_timeout(timeout_seconds: int) -> aiohttp.ClientTimeout:
    """Bounded waits for an origin: connecting, each read, and the whole response."""
    return aiohttp.ClientTimeout(total=timeout_seconds * 4, connect=min(timeout_seconds, 5),
                                 sock_read=timeout_seconds)


@dataclass(frozen=True, slots=True)
class CachedObject:
    body: bytes
    content_type: str | None
    expires_at_ms: int
    status: int = 200  # or 404: the origin does not have it


class ByteLru:
    """Least-recently-used cache bounded by the total size of the bodies it holds."""

    def __init__(self, max_bytes: int, max_items: int = 65536) -> None:
        self.max_bytes = max_bytes
        # Bounded in count too: remembered 404s weigh nothing in bytes.
        self.max_items = max_items
        # One object may take an eighth of the cache, so one huge file cannot flush it.
        self.max_item_bytes = max_bytes // 8
        self.size_bytes = 0
        self._items: OrderedDict[str, CachedObject] = OrderedDict()
        # Keys being fetched again: until then, their expired copy still answers.
        self._refreshing: set[str] = set()

    def get(self, key: str, now_ms: int) -> CachedObject | None:
        """The object under `key`, unless it expired by `now_ms` (the caller's clock) and
        is not being fetched again (`refresh_started`)."""
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires_at_ms <= now_ms:
            # Kept until the refresh replaces it (or the LRU pushes it out), so that
            # the requests arriving meanwhile have an answer.
            return item if key in self._refreshing else None
        self._items.move_to_end(key)
        return item

    def refresh_started(self, key: str) -> None:
        """`key` is being fetched again: its copy, expired or not, answers until
        `refresh_ended`."""
        self._refreshing.add(key)

    def refresh_ended(self, key: str, item: CachedObject | None) -> None:
        """The fresh copy is `item` (kept as `put` keeps it), or there is none (a failed
        or uncacheable fetch): the old copy goes too."""
        self._refreshing.discard(key)
        if item is None:
            self._drop(key)
        else:
            self.put(key, item)

    def put(self, key: str, item: CachedObject) -> None:
        self._drop(key)  # replaced, or outdated by a copy too big to keep
        if not self.max_bytes or len(item.body) > self.max_item_bytes:
            return
        self._items[key] = item
        self.size_bytes += len(item.body)
        while self.size_bytes > self.max_bytes or len(self._items) > self.max_items:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.size_bytes -= len(item.body)

    def __len__(self) -> int:
        return len(self._items)


class SharedFetch:
    """One upstream response, readable by any number of requests while it arrives."""

    def __init__(self) -> None:
        self.status = 0
        self.content_type: str | None = None
        self.content_length: int | None = None
        self.max_age_s: int | None = None
        self.headers_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: list[bytes] = []
        self._done = False
        self._error: GatewayError | None = None
        self._arrived = asyncio.Condition()

    def set_head(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.content_type = response.content_type if "Content-Type" in response.headers else None
        self.content_length = response.content_length
        self.max_age_s = _max_age(response.headers.get("Cache-Control", ""))
        self.headers_ready.set_result(None)

    async def add(self, chunk: bytes) -> None:
        async with self._arrived:
            self._chunks.append(chunk)
            self._arrived.notify_all()

    async def finish(self, error: GatewayError | None = None) -> None:
        if not self.headers_ready.done():
            self.headers_ready.set_exception(error or UpstreamFailed())
            # Nobody may be waiting: do not warn about an exception never retrieved.
            self.headers_ready.exception()
        async with self._arrived:
            self._done, self._error = True, error
            self._arrived.notify_all()

    async def body(self) -> AsyncIterator[bytes]:
        """Every chunk, from the first, as it arrives; raises if the upstream broke."""
        index = 0
        while True:
            def more_or_done(seen: int = index) -> bool:
                return seen < len(self._chunks) or self._done

            async with self._arrived:
                await self._arrived.wait_for(more_or_done)
                ready = self._chunks[index:]
                done, error = self._done, self._error
            for chunk in ready:
                yield chunk
            index += len(ready)
            if done and index == len(self._chunks):
                if error is not None:
                    raise error
                return

    def whole_body(self) -> bytes:
        return b"".join(self._chunks)


class UpstreamFetcher:
    def __init__(self, client: aiohttp.ClientSession, cache: ByteLru, clock: Clock,
                 timeout_seconds: int) -> None:
        self._client = client
        self.cache = cache
        self._clock = clock
        self._timeout = upstream_timeout(timeout_seconds)
        self._in_flight: dict[str, SharedFetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.upstream_requests = 0
        self.coalesced_requests = 0

    def fetch(self, key: str, url: URL, *, cache_for_ms: int | None) -> SharedFetch:
        """The shared fetch for `url` (cached under `key`, the URL as text): joins one
        under way, or starts it. With `cache_for_ms`, a complete 200 response is kept
        that long (capped by the upstream's own max-age)."""
        shared = self._in_flight.get(key)
        if shared is not None:
            self.coalesced_requests += 1
            return shared
        shared = SharedFetch()
        self._in_flight[key] = shared
        self.cache.refresh_started(key)
        # A task of its own: one viewer hanging up must not cancel it for the others.
        task = asyncio.create_task(self._run(key, url, shared, cache_for_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return shared

    async def _run(self, key: str, url: URL, shared: SharedFetch,
                   cache_for_ms: int | None) -> None:
        fresh: CachedObject | None = None
        try:
            fresh = await self._fetch(key, url, shared, cache_for_ms)
        finally:
            self.cache.refresh_ended(key, fresh)

    async def _fetch(self, key: str, url: URL, shared: SharedFetch,
                     cache_for_ms: int | None) -> CachedObject | None:
        """Streams the upstream response into `shared`; what to cache of it, if any."""
        self.upstream_requests += 1
        error: GatewayError | None = None
        try:
            async with self._client.get(url, timeout=self._timeout, allow_redirects=False,
                                        headers={"Accept-Encoding": "identity"}) as response:
                shared.set_head(response)
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    await shared.add(chunk)
        except TimeoutError:
            error = UpstreamTimeout()
        except (aiohttp.ClientError, OSError):
            error = UpstreamFailed()
        finally:
            # Later requests start a fresh fetch (or hit the cache) from here on.
            self._in_flight.pop(key, None)
            await shared.finish(error)
        if shared.max_age_s is not None and cache_for_ms:
            cache_for_ms = min(cache_for_ms, shared.max_age_s * 1000)
        if error is None and shared.status == 200 and cache_for_ms:
            return CachedObject(shared.whole_body(), shared.content_type,
                                self._clock() + cache_for_ms)
        if error is None and shared.status in (404, 410):
            return CachedObject(b"", None, self._clock() + NOT_FOUND_CACHE_MS, status=404)
        return None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _max_age(cache_control: str) -> int | None:
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache", "private"):
            return 0
        if name in ("s-maxage", "max-age") and is_ascii_int(value, max_digits=9):
            return int(value)
    return None


class LocalFiles:
    """Small local files kept in the gate's memory cache: read once, off the event loop
    (concurrent requests share the read), then served from memory. A file too big to
    cache comes back as None, for the caller to send with sendfile."""

    def __init__(self, cache: ByteLru, clock: Clock) -> None:
        # Where files are kept, under `key(file)`: a caller on the hot path looks there
        # itself (origins.DirectoryOrigin.cached), without another call in between.
        self.memory = cache
        self._clock = clock
        self._reading: dict[str, asyncio.Future[bytes | None]] = {}

    @staticmethod
    def key(file: str) -> str:
        return "file:" + file

    async def read(self, file: str, cache_for_ms: int) -> bytes | None:
        key = self.key(file)
        cached = self.memory.get(key, self._clock())
        if cached is not None:
            return cached.body
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(asyncio.to_thread(self._load, file))
            self._reading[key] = reading
            self.memory.refresh_started(key)
            reading.add_done_callback(lambda done: self._loaded(key, done, cache_for_ms))
        try:
            return await asyncio.shield(reading)
        except OSError:
            raise MediaNotFound() from None

    def _load(self, file: str) -> bytes | None:
        path = Path(file)
        if path.stat().st_size > self.memory.max_item_bytes:
            return None
        return path.read_bytes()

    def _loaded(self, key: str, done: asyncio.Future[bytes | None], cache_for_ms: int) -> None:
        self._reading.pop(key, None)
        body = None if done.cancelled() or done.exception() is not None else done.result()
        self.memory.refresh_ended(key, None if body is None else CachedObject(
            body, None, self._clock() + cache_for_ms))
