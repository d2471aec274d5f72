"""Reconciliation's own promises, beyond the whole-flow tests: a few questions at a
time, each session on its own backoff, and a window that ends."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.app import create_app
from gateway.keys import METRICS, RECONCILER, SWEEPER
from gateway.settings import Settings
from tests.conftest import API_KEY, AppFactory, FakeClock
from tests.providers.fake_midtrans import FakeMidtrans

KEY = "SB-Mid-server-RECONCILE"


async def test_questions_go_a_few_at_a_time_and_back_off(
        aiohttp_server: Any, settings: Settings, clock: FakeClock,
        make_viewer: AppFactory) -> None:
    fake = FakeMidtrans(KEY, clock)
    server = await aiohttp_server(fake.app)
    viewer = await make_viewer(replace(
        settings, provider="midtrans", provider_url=str(server.make_url("")).rstrip("/"),
        provider_credentials={"GATEWAY_MIDTRANS_SERVER_KEY": KEY}))
    for number in range(10):
        await viewer.call("POST", "/api/generate-qris", expect=201,
                          json={"streamId": "demo", "userId": f"viewer-{number}"},
                          headers={"X-Api-Key": API_KEY})
    app = viewer.http.server.app
    assert app is not None
    reconciler = app[RECONCILER]
    fake.status_delay_s = 0.05
    clock.advance(settings.reconcile_interval_seconds)
    report = await reconciler.run_once()
    assert (report.asked, report.paid, report.failed) == (10, 0, 0)
    assert 1 < fake.most_in_flight <= 4
    metrics = app[METRICS].render().decode()
    assert 'gateway_reconcile_questions_total{outcome="pending"} 10.0' in metrics
    # Still pending: asked again only after a longer wait each time.
    clock.advance(settings.reconcile_interval_seconds)
    assert (await reconciler.run_once()).asked == 0
    clock.advance(settings.reconcile_interval_seconds)
    assert (await reconciler.run_once()).asked == 10
    clock.advance(settings.reconcile_interval_seconds * 3)
    assert (await reconciler.run_once()).asked == 0
    clock.advance(settings.reconcile_interval_seconds)
    assert (await reconciler.run_once()).asked == 10
    # Long after the window (and the while after it that late payments get), nobody
    # is asked about any more.
    clock.advance(settings.payment_window_seconds + 3 * 3600)
    assert (await reconciler.run_once()).asked == 0


async def test_with_several_workers_only_worker_0_reconciles_and_sweeps(
        aiohttp_server: Any, aiohttp_client: Any, settings: Settings,
        clock: FakeClock) -> None:
    """GATEWAY_WORKERS=N: every worker serves, but reconciliation and the sweeper run
    once, in worker 0, not N times over one store."""
    fake = FakeMidtrans(KEY, clock)
    server = await aiohttp_server(fake.app)
    real_provider = replace(
        settings, provider="midtrans", provider_url=str(server.make_url("")).rstrip("/"),
        provider_credentials={"GATEWAY_MIDTRANS_SERVER_KEY": KEY})
    for worker_index, runs_jobs in ((0, True), (1, False), (None, True)):
        client = await aiohttp_client(create_app(replace(real_provider,
                                                         worker_index=worker_index),
                                                 clock=clock))
        app = client.server.app
        assert (RECONCILER in app, SWEEPER in app) == (runs_jobs, runs_jobs), worker_index
