"""Each long-lived resource opened and closed by its own cleanup context, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.keys import CATALOG, CLOCK, HTTP_CLIENT, PROVIDER, SESSIONS, SETTINGS, STORE, SWEEPER
from gateway.logs import log_event
from gateway.sessions import PaymentSessions
from gateway.store import open_store

log = logging.getLogger("gateway.resources")


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_store(settings.store_url)
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


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_sweep_forever(app), name="session-sweeper")
    app[SWEEPER] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweep_forever(app: web.Application) -> None:
    interval_s = app[SETTINGS].cleanup_interval_seconds
    while True:
        try:
            report = await app[SESSIONS].sweep()
            if report.expired or report.pruned:
                log_event(log, "sweep", expired=report.expired, pruned=report.pruned)
        except Exception:  # a bad sweep must not end sweeping
            log.exception("sweep failed")
        await asyncio.sleep(interval_s)
