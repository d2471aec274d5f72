"""The app's long-lived resources: opened at start-up, closed at shutdown, and the
background sweeper doing its rounds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.keys import SESSIONS, SWEEPER
from gateway.sessions import PaymentSession
from tests.conftest import AppFactory, FakeClock, make_settings


async def test_the_sweeper_marks_expired_sessions_and_tells_listeners(
        tmp_path: Path, make_viewer: AppFactory, clock: FakeClock) -> None:
    settings = make_settings(tmp_path, GATEWAY_CLEANUP_INTERVAL_SECONDS="1")
    viewer = await make_viewer(settings)
    qr = await viewer.generate_qris()
    app = viewer.http.app
    assert app is not None
    expired = asyncio.Event()

    def listen(session: PaymentSession) -> None:
        if session.session_id == qr["sessionId"] and session.status == "expired":
            expired.set()

    app[SESSIONS].add_listener(listen)
    clock.advance(1200)
    await asyncio.wait_for(expired.wait(), timeout=10)  # its next round, within 1 s
    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        (status,) = conn.execute("SELECT status FROM payment_sessions").fetchone()
    assert status == "expired"


async def test_shutdown_stops_the_sweeper(make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    app = viewer.http.app
    assert app is not None
    sweeper = app[SWEEPER]
    assert not sweeper.done()
    await viewer.http.close()
    assert sweeper.cancelled()
