"""Each long-lived resource opened and closed by its own cleanup context, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.catalog import Stream
from gateway.clock import Clock
from gateway.errors import StoreUnavailable
from gateway.gate.cache import ByteLru, LocalFiles, UpstreamFetcher
from gateway.gate.origins import DirectoryOrigin, HttpOrigin, LiveLoopOrigin, Origin
from gateway.handlers.hls import playback_url_templates
from gateway.keys import (
    CATALOG,
    CHANGE_FOLLOWER,
    CLOCK,
    GATE,
    HTTP_CLIENT,
    METRICS,
    ORIGINS,
    PLAYBACK_URLS,
    PROVIDER,
    SESSIONS,
    SETTINGS,
    STATUS_HUB,
    STATUS_SENDER,
    STORE,
    SWEEPER,
    UPSTREAM,
    WEBSOCKETS,
)
from gateway.logs import log_event
from gateway.sessions import PaymentSessions
from gateway.store import open_store

log = logging.getLogger("gateway.resources")


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_store(settings.store_url, settings.redis_key_prefix,
                             settings.store_timeout_seconds)
    app[STORE] = store
    app[SESSIONS] = PaymentSessions(
        store, app[PROVIDER], app[CATALOG], app[CLOCK],
        access_seconds=settings.access_seconds,
        payment_window_seconds=settings.payment_window_seconds,
        unpaid_retention_seconds=settings.unpaid_retention_seconds,
    )
    yield
    await store.close()


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    # One pooled client for the whole process: provider calls, simulator deliveries and
    # (later) upstream origin fetches share connections instead of opening one each.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30, connect=5),
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=64),
    ) as client:
        app[HTTP_CLIENT] = client
        yield


async def gate_ctx(app: web.Application) -> AsyncIterator[None]:
    """The HLS gate's origins, and its map of ended sessions kept current."""
    settings, clock, gate = app[SETTINGS], app[CLOCK], app[GATE]
    app[SESSIONS].add_listener(gate.session_changed)
    # Sessions ended before this process started still have tokens that look valid.
    for session in await app[SESSIONS].ended_early():
        gate.session_changed(session)
    # One memory budget for every origin's hot objects.
    cache = ByteLru(settings.segment_cache_bytes, clock)
    fetcher = UpstreamFetcher(app[HTTP_CLIENT], cache, clock, settings.upstream_timeout_seconds)
    files = LocalFiles(cache, clock)
    app[UPSTREAM] = fetcher
    app[ORIGINS] = {stream.stream_id: _origin(stream, app, fetcher, files, clock)
                    for stream in app[CATALOG]}
    app[PLAYBACK_URLS] = {stream.stream_id: playback_url_templates(app, stream)
                          for stream in app[CATALOG]}
    yield
    await fetcher.close()


def _origin(stream: Stream, app: web.Application, fetcher: UpstreamFetcher,
            files: LocalFiles, clock: Clock) -> Origin:
    if stream.origin_url is not None:
        return HttpOrigin(stream.origin_url, fetcher, app[HTTP_CLIENT], clock,
                          app[SETTINGS].upstream_timeout_seconds)
    assert stream.origin_dir is not None
    if stream.loop_source is not None:
        return LiveLoopOrigin(stream.origin_dir, stream.loop_source, stream.playlist, files,
                              clock)
    return DirectoryOrigin(stream.origin_dir, files, clock)


async def status_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """The listener that turns session changes into WebSocket pushes, and its sender."""
    hub = app[STATUS_HUB]
    app[SESSIONS].add_listener(hub.publish)
    app[STATUS_SENDER] = asyncio.create_task(hub.run_sender(), name="status-sender")
    yield
    await _stop(app[STATUS_SENDER])
    hub.close()


async def store_changes_ctx(app: web.Application) -> AsyncIterator[None]:
    """With a shared store: status changes made by other instances, told to this one's
    listeners, so a WebSocket held here hears a payment another instance received and
    this HLS gate refuses a session another instance revoked."""
    if not app[STORE].shared:
        yield
        return
    app[CHANGE_FOLLOWER] = asyncio.create_task(_follow_changes(app), name="store-changes")
    yield
    await _stop(app[CHANGE_FOLLOWER])


_RESUBSCRIBE_DELAYS_S = (0.1, 0.5, 1, 2, 5, 10)


async def _follow_changes(app: web.Application) -> None:
    sessions, metrics = app[SESSIONS], app[METRICS]
    metrics.change_feed_up = False
    failures = 0

    async def catch_up() -> None:
        # Pub/sub delivers at most once and only while subscribed: whatever changed
        # before this (re)subscription is read from the store instead.
        nonlocal failures
        gate, hub = app[GATE], app[STATUS_HUB]
        for session in await sessions.ended_early():
            gate.session_changed(session)
        for watched in await sessions.store.get_many(hub.watched_session_ids()):
            hub.publish_if_changed(watched)
        if failures:
            log_event(log, "store_changes_resumed", after_failures=failures)
        failures = 0
        metrics.change_feed_up = True

    while True:
        try:
            async for session in sessions.store.changes(catch_up):
                sessions.notify_listeners(session)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as lost:
            # The store went away (restarted, unreachable): expected, no traceback.
            log_event(log, "store_changes_lost", level=logging.WARNING,
                      error=type(lost).__name__)
        except Exception:
            log.exception("lost the store's change feed; resubscribing")
        metrics.change_feed_up = False
        delay_s = _RESUBSCRIBE_DELAYS_S[min(failures, len(_RESUBSCRIBE_DELAYS_S) - 1)]
        failures += 1
        await asyncio.sleep(delay_s)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Counts status changes, and reads the hot path's figures when Prometheus asks."""
    metrics = app[METRICS]
    app[SESSIONS].add_listener(metrics.session_changed)
    fetcher, hub, gate, websockets = app[UPSTREAM], app[STATUS_HUB], app[GATE], app[WEBSOCKETS]

    def live_figures() -> dict[str, float]:
        return {
            "gateway_upstream_fetches": fetcher.upstream_requests,
            "gateway_upstream_coalesced": fetcher.coalesced_requests,
            "gateway_segment_cache_bytes": fetcher.cache.size_bytes,
            "gateway_segment_cache_objects": len(fetcher.cache),
            "gateway_segment_cache_limit_bytes": fetcher.cache.max_bytes,
            "gateway_websockets": len(websockets),
            "gateway_watched_sessions": hub.watched_sessions,
            "gateway_ended_sessions": gate.ended_sessions,
        }

    metrics.watch(live_figures)
    yield


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SWEEPER] = asyncio.create_task(_sweep_forever(app), name="session-sweeper")
    yield
    await _stop(app[SWEEPER])


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a background task of this module's and wait until it has finished. Again
    if need be: redis-py (8.1) swallows a cancellation that lands as a command starts,
    and the task then carries on."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweep_forever(app: web.Application) -> None:
    interval_s = app[SETTINGS].cleanup_interval_seconds
    while True:
        try:
            report = await app[SESSIONS].sweep()
            if report.expired or report.pruned:
                log_event(log, "sweep", expired=report.expired, pruned=report.pruned)
        except StoreUnavailable:  # said once by the store; the next round catches up
            pass
        except Exception:  # a bad sweep must not end sweeping
            log.exception("sweep failed")
        await asyncio.sleep(interval_s)
