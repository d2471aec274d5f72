"""check-access and the no-duplicate check (a repeat generate-qris) with 1,000 and with
1,000,000 sessions stored: latency should be the same within 20%.

    .venv/bin/python -m bench.check_access_scale [seconds]
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bench.api_throughput import paid_viewer
from bench.tools import ServerProcess, WrkResult, wrk
from gateway import qris
from gateway.qris import MerchantProfile
from gateway.store.sqlite import open_sqlite

REPEAT_QR = """
wrk.method = "POST"
wrk.body = '{"streamId":"demo"}'
wrk.headers["Content-Type"] = "application/json"
"""
NOW_MS = int(time.time() * 1000)


def fill(path: Path, count: int) -> None:
    """`count` sessions shaped like a ledger: mostly expired (half of them paid, the
    sales record), a tenth pending, for many viewers across the demo streams."""
    asyncio.run(_create_schema(str(path)))
    payload = qris.build_dynamic(MerchantProfile(), 25000, "SIMAAAAAAAAAAAAAAAAAA")
    rows = []
    for index in range(count):
        pending = index % 10 == 0
        created = NOW_MS - (count - index) * 1000
        paid = not pending and index % 2 == 1
        rows.append((
            secrets.token_urlsafe(16), f"v_{index // 3 if not pending else f'p{index}'}",
            "demo" if index % 2 else "konser-malam", "simulator", f"SIM{index:017d}",
            25000, 0, payload, "pending" if pending else "expired", created,
            created + 5000 if paid else None,
            NOW_MS + 600_000 if pending else created + 1_200_000,
        ))
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO payment_sessions (session_id, user_id, stream_id, provider, trx_id,"
            " amount, fee, qr_string, status, created_at_ms, paid_at_ms, expires_at_ms)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")


async def _create_schema(path: str) -> None:
    await (await open_sqlite(path)).close()


def measure(count: int, seconds: int) -> tuple[WrkResult, WrkResult, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "g.db"
        started = time.perf_counter()
        fill(db, count)
        fill_s = time.perf_counter() - started
        gateway = ServerProcess({"GATEWAY_VAR_DIR": tmp, "GATEWAY_STORE": f"sqlite:///{db}", "GATEWAY_QR_RATE_PER_ADDRESS": "0", "GATEWAY_QR_RATE_PER_VIEWER": "0"})
        gateway.start()
        try:
            cookie, session_id = asyncio.run(paid_viewer(gateway.url))
            headers = {"Cookie": cookie}
            access = wrk(f"{gateway.url}/api/check-access?streamId=demo&sessionId={session_id}",
                         connections=10, seconds=seconds, headers=headers)
            duplicate = wrk(f"{gateway.url}/api/generate-qris", connections=10,
                            seconds=seconds, headers=headers, script=REPEAT_QR)
        finally:
            gateway.stop()
        size_mb = db.stat().st_size / 1e6
    print(f"  {count:>9,} sessions ({size_mb:6.0f} MB, filled in {fill_s:5.1f} s)")
    return access, duplicate, size_mb


def main(seconds: int) -> None:
    print(f"wrk -t1 -c10 -d{seconds}s per line")
    small_access, small_dup, _ = measure(1_000, seconds)
    large_access, large_dup, _ = measure(1_000_000, seconds)
    print(f"check-access      1,000 sessions: {small_access}")
    print(f"check-access  1,000,000 sessions: {large_access}")
    print(f"  p50 ratio large/small: {large_access.p50_ms / small_access.p50_ms:.2f}")
    print(f"duplicate check   1,000 sessions: {small_dup}")
    print(f"duplicate check 1,000,000 sessions: {large_dup}")
    print(f"  p50 ratio large/small: {large_dup.p50_ms / small_dup.p50_ms:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
