"""Each long-lived resource opened and closed by its own cleanup context, in order."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import WSCloseCode, web

from gateway.catalog import Stream
from gateway.change_feed import ChangeFeed
from gateway.delivery.keys import StreamKeys
from gateway.delivery.service import KeysDelivery, playing_window_ms
from gateway.delivery.urls import MediaUrls
from gateway.devices import Devices
from gateway.errors import StoreUnavailable
from gateway.keys import (
    CATALOG,
    CHANGE_FOLLOWER,
    CLOCK,
    CONSOLE_SIGN_INS,
    DEVICES,
    GATE,
    HTTP_CLIENT,
    KEYS_DELIVERY,
    LIMITS,
    LINE,
    LINE_TASK,
    LINE_WATCHERS,
    LINE_WATCHERS_TASK,
    METRICS,
    OPERATOR_AUTH,
    PROVIDER,
    RECONCILE_TASK,
    RECONCILER,
    REFUNDS,
    REFUNDS_TASK,
    REPORTS,
    SESSIONS,
    SETTINGS,
    STATUS_HUB,
    STATUS_SENDER,
    STORE,
    STREAM_HEALTH,
    STREAM_WATCHER,
    SWEEPER,
    WEBSOCKETS,
)
from gateway.limits import SessionCreationLimits
from gateway.line import LineWatchers, QrLine
from gateway.logs import log_event
from gateway.operators import ConsoleSignIns
from gateway.reconcile import Reconciler
from gateway.refunds import RefundService
from gateway.reports import Reports
from gateway.session_json import qr_json
from gateway.sessions import SessionService
from gateway.store import open_store
from gateway.stream_health import (
    DirectoryPlaylists,
    HttpPlaylists,
    PlaylistSource,
    StreamHealth,
)

log = logging.getLogger("gateway.resources")


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_store(settings.store_url, settings.redis_key_prefix,
                             settings.store_timeout_seconds, processes=settings.workers)
    app[STORE] = store
    # Each use case gets the parts of the store it needs, and only those.
    app[LIMITS] = SessionCreationLimits(store.counters, app[CLOCK], settings)
    sessions = SessionService(
        store.sessions, store.changes, app[PROVIDER], app[CATALOG], app[CLOCK],
        access_seconds=settings.access_seconds,
        payment_window_seconds=settings.payment_window_seconds,
        unpaid_retention_seconds=settings.unpaid_retention_seconds,
    )
    app[SESSIONS] = sessions
    app[LINE] = QrLine(sessions, store.line, store.counters, app[LIMITS], app[CLOCK],
                       provider_rate_per_minute=settings.provider_rate_per_minute,
                       queue_rate_per_minute=settings.queue_rate_per_minute)
    app[LINE].on_made = lambda session: app[METRICS].sessions_created.inc()
    # Stream health opens later (its own context): looked up when a buyer comes.
    app[LINE].ensure_buyable = lambda stream_id: app[STREAM_HEALTH].ensure_stream_buyable(
        stream_id)
    app[LINE_WATCHERS] = LineWatchers(
        app[LINE], sessions, app[CLOCK],
        # The QR as generate-qris answers it, image URLs and all.
        lambda session, now_ms: qr_json(session, now_ms, app.router))
    app[LINE].on_dropped = app[LINE_WATCHERS].dropped
    # Playback grants per device (devices.py); the gate counts them (HlsGate.open).
    app[DEVICES] = Devices(
        store.grants, app[CLOCK], max_devices=settings.max_devices,
        **({"playing_window_ms": playing_window_ms(settings.key_rotation_seconds)}
           if settings.delivery == "keys" else {}))
    app[REPORTS] = Reports(store.ledger, store.sessions, store.grants, app[CLOCK],
                           app[PROVIDER].name,
                           # "Playing now" counts a place as long as the gate does.
                           playing_window_ms=app[DEVICES].playing_window_ms)
    refunds = RefundService(store.refunds, store.cancellations, store.ledger, sessions,
                            app[PROVIDER], app[CATALOG], app[CLOCK],
                            retry_after_seconds=settings.refund_retry_seconds)
    app[REFUNDS] = refunds
    sessions.on_recorded(refunds.notification_recorded)
    await refunds.read_cancellations()
    if OPERATOR_AUTH in app:  # the console
        app[CONSOLE_SIGN_INS] = ConsoleSignIns(app[OPERATOR_AUTH], store.sign_ins, app[CLOCK])
    _listen_to_status_changes(app, sessions)
    yield
    await store.close()


def _listen_to_status_changes(app: web.Application, sessions: SessionService) -> None:
    """Every listener of session status changes, registered here and nowhere else.

    A change is a payment applied or a session superseded (SessionService.
    record_notification), a revocation (.revoke) or an expiry found by the sweeper
    (.sweep), made by this instance; with a shared store also one made by another
    instance, arriving through the ChangeFeed (change_feed.py). Each listener is called
    with the session's new state, in this order:
    """
    # The gate: a session ended early is refused at its next playlist or segment.
    sessions.add_listener(app[GATE].session_changed)
    # The status hub: pushes the new state to the WebSockets watching the session.
    sessions.add_listener(app[STATUS_HUB].publish)
    # Metrics: counts status changes by their new status.
    sessions.add_listener(app[METRICS].session_changed)
    # The line's WebSockets: a QR made for a buyer who waited is pushed to them.
    sessions.add_listener(app[LINE_WATCHERS].session_made)


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    # One pooled client for the whole process: provider calls, simulator deliveries and
    # (later) upstream origin fetches share connections instead of opening one each.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30, connect=5),
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=64),
    ) as client:
        app[HTTP_CLIENT] = client
        yield


async def provider_ctx(app: web.Application) -> AsyncIterator[None]:
    """The provider's API client: the pooled HTTP client, opened and closed with it."""
    provider = app[PROVIDER]
    await provider.open(app[HTTP_CLIENT])
    yield
    await provider.close()


async def reconciler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Asks a real provider about payments whose notification has not come. The
    simulator delivers in-process and cannot lose one: nothing to reconcile."""
    settings = app[SETTINGS]
    if settings.provider == "simulator" or not settings.runs_background_jobs:
        yield
        return
    reconciler = Reconciler(
        app[SESSIONS], app[PROVIDER], app[CLOCK],
        delay_seconds=settings.reconcile_interval_seconds,
        payment_window_seconds=settings.payment_window_seconds,
        metrics=app[METRICS],
    )
    app[RECONCILER] = reconciler
    app[RECONCILE_TASK] = asyncio.create_task(
        _reconcile_forever(reconciler, settings.reconcile_interval_seconds),
        name="reconciler")
    yield
    await _stop(app[RECONCILE_TASK])


async def _reconcile_forever(reconciler: Reconciler, interval_s: int) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await reconciler.run_once()
        except Exception:  # a bad round (the store, say) must not end reconciling
            log.exception("reconciliation round failed")


async def gate_ctx(app: web.Application) -> AsyncIterator[None]:
    """The HLS gate's origins, and its map of ended sessions kept current."""
    gate = app[GATE]
    # Sessions ended before this process started still have tokens that look valid.
    for session in await app[SESSIONS].ended_early():
        gate.session_changed(session)
    gate.open(app[HTTP_CLIENT], app[DEVICES])
    yield
    await gate.close()


async def keys_delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    """GATEWAY_DELIVERY=keys: the gate's origins and memory cache, the store's keys."""
    settings, gate = app[SETTINGS], app[GATE]
    if settings.delivery == "keys":
        # Its own key, derived from the secret: a URL tag is never a token or a cookie.
        url_secret = hmac.digest(settings.secret, b"gateway/media-urls", hashlib.sha256)
        app[KEYS_DELIVERY] = KeysDelivery(
            gate.origin, StreamKeys(app[STORE].media_keys), MediaUrls(url_secret),
            rotation_seconds=settings.key_rotation_seconds, cache=gate.fetcher.cache,
            clock=app[CLOCK])
    yield


async def stream_health_ctx(app: web.Application) -> AsyncIterator[None]:
    """Watches every origin from here, whoever serves the bytes (this gate or nginx)."""
    settings, client = app[SETTINGS], app[HTTP_CLIENT]

    def source(stream: Stream) -> PlaylistSource | None:
        if stream.origin_url is not None:
            return HttpPlaylists(stream.origin_url, client,
                                 min(settings.upstream_timeout_seconds,
                                     settings.stream_check_interval_seconds + 1))
        if stream.loop_source is not None:
            return None  # made from the clock: live whenever we are
        assert stream.origin_dir is not None
        return DirectoryPlaylists(stream.origin_dir)

    health = StreamHealth(app[CATALOG], {s.stream_id: source(s) for s in app[CATALOG]},
                          app[CLOCK],
                          offline_after_seconds=settings.stream_offline_after_seconds)
    health.is_cancelled = app[REFUNDS].is_cancelled
    # Before the first request: a stream is never sold before its origin was seen
    # answering (each check is bounded by its own timeout).
    await health.check_all()
    app[STREAM_HEALTH] = health
    app[STREAM_WATCHER] = asyncio.create_task(
        health.run(settings.stream_check_interval_seconds), name="stream-health")
    yield
    await _stop(app[STREAM_WATCHER])


async def status_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """The listener that turns session changes into WebSocket pushes, and its sender."""
    hub = app[STATUS_HUB]
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
    feed = ChangeFeed(app[STORE].changes, app[SESSIONS], app[GATE], app[STATUS_HUB],
                      app[METRICS])
    app[CHANGE_FOLLOWER] = asyncio.create_task(feed.run(), name="store-changes")
    yield
    await _stop(app[CHANGE_FOLLOWER])


async def line_ctx(app: web.Application) -> AsyncIterator[None]:
    """The line of buyers waiting for a QR (line.py): served by every instance and
    worker (each pop is atomic, the pace is shared), and its WebSockets kept told."""
    line, watchers = app[LINE], app[LINE_WATCHERS]
    app[LINE_TASK] = asyncio.create_task(line.run(), name="line")
    app[LINE_WATCHERS_TASK] = asyncio.create_task(watchers.run(), name="line-watchers")
    yield
    await _stop(app[LINE_TASK])
    await _stop(app[LINE_WATCHERS_TASK])
    await line.close()


async def refunds_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every instance re-reads the cancelled shows (one cancelled elsewhere stops
    selling here within REFUNDS_EVERY_S); worker 0 also asks the provider again about
    refunds it never answered (the same key: never paid out twice)."""
    settings = app[SETTINGS]
    app[REFUNDS_TASK] = asyncio.create_task(
        _refunds_forever(app[REFUNDS], ask=settings.runs_background_jobs,
                         every_s=min(REFUNDS_EVERY_S, settings.refund_retry_seconds)),
        name="refunds")
    yield
    await _stop(app[REFUNDS_TASK])


REFUNDS_EVERY_S = 5.0


async def _refunds_forever(refunds: RefundService, *, ask: bool, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await refunds.read_cancellations()
            if ask:
                await refunds.ask_unanswered()
        except StoreUnavailable:  # said once by the store; the next round catches up
            pass
        except Exception:  # a bad round must not end the refunds' follow-up
            log.exception("refunds round failed")


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Counts status changes, and reads the hot path's figures when Prometheus asks."""
    metrics = app[METRICS]
    gate, hub, websockets = app[GATE], app[STATUS_HUB], app[WEBSOCKETS]
    fetcher = gate.fetcher
    delivery = app.get(KEYS_DELIVERY)

    def live_figures() -> dict[str, float]:
        return {
            "gateway_gate_granted": gate.granted,
            "gateway_upstream_fetches": fetcher.upstream_requests,
            "gateway_upstream_coalesced": fetcher.coalesced_requests,
            "gateway_segment_cache_bytes": fetcher.cache.size_bytes,
            "gateway_segment_cache_objects": len(fetcher.cache),
            "gateway_segment_cache_limit_bytes": fetcher.cache.max_bytes,
            "gateway_websockets": len(websockets),
            "gateway_watched_sessions": hub.watched_sessions,
            "gateway_ended_sessions": gate.access.ended_sessions,
            "gateway_device_reports": gate.device_reports,
            **({"gateway_keys_segments_encrypted": delivery.segments_encrypted,
                "gateway_keys_playlists_rewritten": delivery.playlists_rewritten}
               if delivery is not None else {}),
        }

    metrics.watch(live_figures)
    yield


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].runs_background_jobs:  # worker 0 sweeps for all of them
        yield
        return
    app[SWEEPER] = asyncio.create_task(_sweep_forever(app), name="session-sweeper")
    yield
    await _stop(app[SWEEPER])


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a background task of this module's and wait until it has finished.

    Cancelled in the middle of a Redis call, redis-py can swallow the CancelledError
    (it tidies the connection up instead), and the task goes on to its next sleep: so
    the cancellation is repeated until the task has really ended."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_RETRY_S)
    with contextlib.suppress(asyncio.CancelledError):
        await task


_STOP_RETRY_S = 1.0


async def close_websockets(app: web.Application) -> None:
    """on_shutdown: tell every viewer we are going away (1001), so they reconnect to
    another instance instead of waiting for a heartbeat to time out."""
    sockets = app[WEBSOCKETS]
    for ws in list(sockets):  # closing one removes it from the set
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


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
