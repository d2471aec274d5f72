"""The operator's console with 1,000,000 sessions in the store, on SQLite and on Redis:
the dashboard and the ledger must answer in under 300 ms (issue 14).

    .venv/bin/python -m bench.console_scale [sessions] [sqlite|redis ...]

Fills a store with `sessions` sessions spread over 90 days (a tenth pending, half of the
rest paid), a ledger of ~550,000 notifications (every payment, duplicate events, wrong
amounts and unknown transactions to settle), and the hourly sales counters, written by
the store's own code paths. Then it times, against a real `gateway serve`, signed in as
an operator: the dashboard at each range, the payments page unfiltered, filtered and
deep in its pages, and the same queries at the store interface alone.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.tools import ServerProcess
from gateway import qris
from gateway.ledger import HOUR_MS, LedgerQuery, LedgerStatus
from gateway.model import (
    Notification,
    NotificationReason,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
)
from gateway.qris import MerchantProfile
from gateway.reports import Reports
from gateway.store.base import Store
from gateway.store.redis import open_redis
from gateway.store.redis.client import Client
from gateway.store.redis.ledger import queue_entry, queue_qr, queue_ticket
from gateway.store.redis.rows import queue_session
from gateway.store.sqlite import open_sqlite
from gateway.store.sqlite.ledger import tag_the_ledger

NOW_MS = int(time.time() * 1000)
SPAN_MS = 90 * 24 * HOUR_MS
API_KEY = "bench-operator-key-0123456789"
SECRET = "b" * 40
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
STREAMS = ("demo", "konser-malam")
PAYLOAD = qris.build_dynamic(MerchantProfile(), 25000, "SIMAAAAAAAAAAAAAAAAAA")
ROUNDS = 15


def shaped(index: int, count: int) -> tuple[PaymentSession, list[tuple[Notification, str]]]:
    """Session `index` of `count`, and the notifications it drew with their reasons."""
    created = NOW_MS - SPAN_MS + index * SPAN_MS // count
    pending = index % 10 == 0 and created > NOW_MS - 1_200_000
    paid = not pending and index % 2 == 1
    stream_id = STREAMS[index % 2]
    status = SessionStatus.PENDING if pending else (
        SessionStatus.PAID if paid and created + 5000 + 7_200_000 > NOW_MS
        else SessionStatus.EXPIRED)
    # About three sessions per viewer; the few still active each get a viewer of their
    # own (one active session per viewer and stream).
    user_id = f"v_{index // 3}" if status == SessionStatus.EXPIRED else f"a_{index}"
    session = PaymentSession(
        session_id=secrets.token_urlsafe(16), user_id=user_id, stream_id=stream_id,
        provider="simulator", trx_id=f"SIM{index:017d}", amount=25000, fee=0,
        qr_string=PAYLOAD, status=status,
        created_at_ms=created, paid_at_ms=created + 5000 if paid else None,
        starts_at_ms=created + 5000 if paid else None,
        expires_at_ms=created + 5000 + 7_200_000 if paid else created + 1_200_000)
    notes: list[tuple[Notification, str]] = []

    def note(event: str, amount: int, at_ms: int, reason: str, trx_id: str = "") -> None:
        notes.append((Notification("simulator", f"evt-{index}-{event}", trx_id or session.trx_id,
                                   amount, "paid", at_ms, at_ms, '{"bench":true}'), reason))

    if paid:
        note("pay", 25000, created + 5000, "paid")
        if index % 100 == 1:
            note("again", 25000, created + 6000, "duplicate_event")
    elif index % 500 == 0:
        note("short", 20000, created + 5000, "amount_mismatch")
    elif index % 1000 == 2:
        note("ghost", 25000, created + 5000, "unknown_transaction", f"GHOST{index}")
    return session, notes


def fill_sqlite(path: Path, count: int) -> None:
    asyncio.run(_create_schema(str(path)))
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.row_factory = sqlite3.Row  # as the store's own connections read rows
        conn.execute("BEGIN")
        for start in range(0, count, 50_000):
            sessions, notes = [], []
            for index in range(start, min(count, start + 50_000)):
                session, drawn = shaped(index, count)
                sessions.append((
                    session.session_id, session.user_id, session.stream_id, session.provider,
                    session.trx_id, session.amount, session.fee, session.qr_string,
                    session.status.value, session.created_at_ms, session.paid_at_ms,
                    session.expires_at_ms, session.starts_at_ms, session.renews))
                for note, reason in drawn:
                    known = not note.trx_id.startswith("GHOST")
                    notes.append((
                        note.provider, note.event_id, note.trx_id,
                        session.session_id if known else None, note.amount, "paid",
                        note.paid_at_ms, note.received_at_ms, None, int(reason == "paid"),
                        reason, note.raw_body, session.stream_id if known else None))
            conn.executemany(
                "INSERT INTO payment_sessions (session_id, user_id, stream_id, provider,"
                " trx_id, amount, fee, qr_string, status, created_at_ms, paid_at_ms,"
                " expires_at_ms, starts_at_ms, renews) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                sessions)
            conn.executemany(
                "INSERT INTO provider_notifications (provider, event_id, trx_id, session_id,"
                " amount, reported_status, paid_at_ms, received_at_ms, replay_key, applied,"
                " reason, raw_body, stream_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", notes)
        # The ledger's tags and the counters the store keeps on every write, computed
        # the migrations' way.
        tag_the_ledger(conn)
        conn.execute("DELETE FROM sales_hourly")
        conn.execute(
            "INSERT INTO sales_hourly (hour_ms, stream_id, qrs_created)"
            " SELECT created_at_ms - created_at_ms % 3600000, stream_id, COUNT(*)"
            " FROM payment_sessions WHERE true GROUP BY 1, 2")
        conn.execute(
            "INSERT INTO sales_hourly (hour_ms, stream_id, tickets_sold, takings)"
            " SELECT paid_at_ms - paid_at_ms % 3600000, stream_id, COUNT(*), SUM(amount)"
            " FROM payment_sessions WHERE paid_at_ms IS NOT NULL GROUP BY 1, 2"
            " ON CONFLICT (hour_ms, stream_id) DO UPDATE SET"
            " tickets_sold = excluded.tickets_sold, takings = excluded.takings")
        conn.execute("COMMIT")
        conn.execute("ANALYZE")


async def _create_schema(path: str) -> None:
    await (await open_sqlite(path)).close()


async def fill_redis(prefix: str, count: int) -> None:
    """Through the store's own write helpers, pipelined (no transactions: nobody else is
    writing), so the layout is exactly what the running store keeps."""
    await (await open_redis(REDIS_URL, prefix)).close()  # its one-time jobs: nothing to do
    client = await Client.connect(REDIS_URL, prefix, 30)
    keys = client.keys
    number = 0
    try:
        for start in range(0, count, 2000):
            async with client.redis.pipeline(transaction=False) as pipe:
                for index in range(start, min(count, start + 2000)):
                    session, drawn = shaped(index, count)
                    queue_session(pipe, keys, session, None)
                    queue_qr(pipe, keys, session)
                    if session.paid_at_ms is not None:
                        queue_ticket(pipe, keys, session)
                    for note, reason in drawn:
                        number += 1
                        known = not note.trx_id.startswith("GHOST")
                        decision = PaymentDecision(reason == "paid", NotificationReason(reason),
                                                   session.session_id if known else None)
                        queue_entry(pipe, keys, number, note, decision,
                                    session.stream_id if known else None)
                await pipe.execute()
        await client.redis.set(keys.notification_ids, number)
    finally:
        await client.close()


async def drop_redis(prefix: str) -> None:
    client = await Client.connect(REDIS_URL, prefix, 30)
    try:
        batch: list[str] = []
        async for key in client.redis.scan_iter(match=f"{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                await client.redis.unlink(*batch)
                batch = []
        if batch:
            await client.redis.unlink(*batch)
    finally:
        await client.close()


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Median and worst of ROUNDS calls, in ms, after one warm-up call."""
    await call()
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def _reports(store: Store) -> Reports:
    return Reports(store.ledger, store.sessions, store.grants, lambda: NOW_MS, "simulator")


STORE_QUERIES: list[tuple[str, Callable[[Store], Awaitable[Any]]]] = [
    ("sales, 30 days hourly (dashboard)",
     lambda s: s.ledger.sales(NOW_MS - 30 * 24 * HOUR_MS, NOW_MS)),
    ("sales, 90 days hourly", lambda s: s.ledger.sales(NOW_MS - SPAN_MS, NOW_MS)),
    ("paid now per stream", lambda s: s.sessions.paid_now(NOW_MS)),
    # The dashboard's one read of both (gateway/reports.py): paid now, then their places.
    ("paid and playing now", lambda s: _reports(s).audience_now()),
    ("ledger, newest 51", lambda s: s.ledger.ledger(LedgerQuery(), 51)),
    ("ledger, needs a person", lambda s: s.ledger.ledger(
        LedgerQuery(status=LedgerStatus.ATTENTION), 100)),
    ("ledger, stream + refused", lambda s: s.ledger.ledger(
        LedgerQuery(stream_id="demo", status=LedgerStatus.REFUSED), 51)),
    ("ledger, reason amount_mismatch", lambda s: s.ledger.ledger(
        LedgerQuery(reason="amount_mismatch"), 51)),
    ("ledger, one day 60 days ago", lambda s: s.ledger.ledger(LedgerQuery(
        from_ms=NOW_MS - 60 * 24 * HOUR_MS, to_ms=NOW_MS - 59 * 24 * HOUR_MS), 51)),
    ("ledger, page far back (cursor)", lambda s: s.ledger.ledger(
        LedgerQuery(before=(NOW_MS - 80 * 24 * HOUR_MS, 1)), 51)),
    ("sessions of a user", lambda s: s.sessions.sessions_of_user("v_4242", 50)),
]
PAGES = [
    ("dashboard, 7 days by day", "/admin", {}),
    ("dashboard, 30 days by hour", "/admin", {"days": "30", "bucket": "hour"}),
    ("dashboard, 90 days by day", "/admin", {"days": "90", "bucket": "day"}),
    ("payments, first page", "/admin/payments", {}),
    ("payments, demo + refused", "/admin/payments", {"stream": "demo", "status": "refused"}),
    ("payments, one day", "/admin/payments", {"from": "", "to": ""}),
    ("sessions, by userId", "/admin/sessions", {"q": "v_4242"}),
]


async def measure_pages(url: str) -> list[tuple[str, float, float]]:
    day = time.strftime("%Y-%m-%d", time.gmtime((NOW_MS - 60 * 24 * HOUR_MS) / 1000))
    results = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/admin/sign-in", headers={"Origin": url},
                             data={"name": "bench", "key": API_KEY}) as response:
            assert response.status == 200, response.status  # followed to the dashboard
        for label, path, params in PAGES:
            if "from" in params:
                params = {"from": day, "to": day}

            async def get(path: str = path, params: dict[str, str] = params) -> None:
                async with http.get(url + path, params=params) as response:
                    assert response.status == 200, (path, response.status)
                    await response.read()

            median, worst = await timed(get)
            results.append((label, median, worst))
    return results


async def measure_store(open_store: Callable[[], Awaitable[Store]]
                        ) -> list[tuple[str, float, float]]:
    store = await open_store()
    try:
        return [(label, *await timed(lambda query=query: query(store)))
                for label, query in STORE_QUERIES]
    finally:
        await store.close()


def report(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"  {title}")
    for label, median, worst in rows:
        flag = "" if worst < 300 else "  OVER 300 ms"
        print(f"    {label:<36} median {median:7.1f} ms   worst {worst:7.1f} ms{flag}")


def run(backend: str, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        env = {"GATEWAY_VAR_DIR": tmp, "GATEWAY_API_KEY": API_KEY, "GATEWAY_SECRET": SECRET,
               "GATEWAY_WEBHOOK_SECRET": SECRET, "GATEWAY_LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        opener: Callable[[], Awaitable[Store]]
        if backend == "sqlite":
            db = Path(tmp) / "g.db"
            fill_sqlite(db, count)
            env["GATEWAY_STORE"] = f"sqlite:///{db}"
            size = f"{db.stat().st_size / 1e6:.0f} MB file"

            async def opener() -> Store:
                return await open_sqlite(str(db))
        else:
            asyncio.run(fill_redis(prefix, count))
            env.update(GATEWAY_STORE=REDIS_URL, GATEWAY_REDIS_KEY_PREFIX=prefix)
            size = "Redis"

            async def opener() -> Store:
                return await open_redis(REDIS_URL, prefix)
        print(f"{backend}: {count:,} sessions ({size}), filled in "
              f"{time.perf_counter() - started:.0f} s")
        try:
            report("store interface", asyncio.run(measure_store(opener)))
            gateway = ServerProcess(env)
            gateway.start(timeout_s=120)
            try:
                report("pages through `gateway serve`, signed in", asyncio.run(
                    measure_pages(gateway.url)))
            finally:
                gateway.stop()
        finally:
            if backend == "redis":
                asyncio.run(drop_redis(prefix))


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 1_000_000
    for backend in argv[1:] or ["sqlite", "redis"]:
        run(backend, count)


if __name__ == "__main__":
    main(sys.argv[1:])
