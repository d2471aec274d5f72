"""Paid-to-push: how long from the provider's notification to the viewer's WebSocket
hearing `paid`, and what idle WebSocket viewers cost.

1. 1,000 payments, one at a time, each to a viewer watching its own session: time from
   sending the signed callback to the `paid` message on the viewer's socket (the
   callback's own round trip, store fsync included, is shown alongside).
2. 10,000 idle viewers on one process: the server's RSS before and after they connect
   (per connection), then the push latency to one of them under that load.

    .venv/bin/python -m bench.push_latency [payments] [idle_viewers]
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.tools import ServerProcess

API_KEY = "bench-api-key-0123456789abcdef"
WEBHOOK_SECRET = "b" * 40


def signed_callback(trx_id: str, amount: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"eventId": "evt_" + secrets.token_hex(8), "trxId": trx_id,
                       "amount": amount, "status": "paid",
                       "paidAt": int(time.time() * 1000)}).encode()
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256)
    return body, {"X-Gateway-Signature": f"t={t},v1={mac.hexdigest()}",
                  "Content-Type": "application/json"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def new_session(client: aiohttp.ClientSession, base: str, user_id: str) -> dict[str, str]:
    async with client.post(f"{base}/api/generate-qris", headers={"X-Api-Key": API_KEY},
                           json={"streamId": "demo", "userId": user_id}) as response:
        return (await response.json())["data"]


async def time_one_payment(client: aiohttp.ClientSession, base: str,
                           socket: aiohttp.ClientWebSocketResponse,
                           session: dict[str, str]) -> tuple[float, float]:
    """The callback goes to `base`, which need not be the server holding `socket`."""
    body, headers = signed_callback(session["trxId"], int(session["amount"]))
    started = time.perf_counter()
    callback = asyncio.create_task(client.post(f"{base}/api/payment-callback", data=body,
                                               headers=headers))
    while True:
        message = json.loads((await socket.receive()).data)
        if message.get("status") == "paid":
            break
    pushed = time.perf_counter()
    response = await callback
    answered = time.perf_counter()
    assert response.status == 200
    response.release()
    return (pushed - started) * 1000, (answered - started) * 1000


async def payments(base: str, count: int, callback_base: str | None = None,
                   viewer_prefix: str = "pay") -> tuple[list[float], list[float]]:
    """`count` payments to viewers watching on `base`; the provider's callbacks go to
    `callback_base` (another instance sharing the store), or to `base` itself."""
    pushes, callbacks = [], []
    async with aiohttp.ClientSession() as client:
        for index in range(count):
            session = await new_session(client, base, f"{viewer_prefix}-{index}")
            async with client.ws_connect(f"{base}/ws?sessionId={session['sessionId']}",
                                         headers={"X-Api-Key": API_KEY}) as socket:
                await socket.receive()  # the snapshot
                push_ms, callback_ms = await time_one_payment(
                    client, callback_base or base, socket, session)
            pushes.append(push_ms)
            callbacks.append(callback_ms)
    return pushes, callbacks


async def idle_viewers(base: str, pid: int, count: int) -> tuple[int, int, list[float]]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        sessions = []
        for start in range(0, count, 200):
            sessions += await asyncio.gather(*(new_session(client, base, f"idle-{i}")
                                               for i in range(start, min(count, start + 200))))
        await asyncio.sleep(1)
        before = rss_kib(pid)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        for start in range(0, count, 500):
            batch = sessions[start:start + 500]
            opened = await asyncio.gather(*(
                client.ws_connect(f"{base}/ws?sessionId={s['sessionId']}",
                                  headers={"X-Api-Key": API_KEY}, heartbeat=None)
                for s in batch))
            for socket in opened:
                await socket.receive()  # snapshot: the server has registered it
            sockets += opened
        await asyncio.sleep(2)
        after = rss_kib(pid)
        latencies = []
        for index in range(100):  # pushes to some of them, while all are connected
            target = index * (count // 100)
            push_ms, _ = await time_one_payment(client, base, sockets[target], sessions[target])
            latencies.append(push_ms)
        for socket in sockets:
            await socket.close()
    return before, after, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(count: int, idle: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess({
            "GATEWAY_VAR_DIR": tmp, "GATEWAY_STORE": f"sqlite:///{tmp}/g.db", "GATEWAY_QR_RATE_PER_ADDRESS": "0", "GATEWAY_QR_RATE_PER_VIEWER": "0",
            "GATEWAY_API_KEY": API_KEY, "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GATEWAY_LOG_LEVEL": "WARNING"}).start()
        assert server.process is not None
        try:
            pushes, callbacks = asyncio.run(payments(server.url, count))
            before, after, loaded = asyncio.run(idle_viewers(server.url, server.process.pid,
                                                             idle))
        finally:
            server.stop()
    gc.collect()
    print(f"{count} payments, one at a time (ms from sending the signed callback):")
    print(f"  WebSocket 'paid'  p50 {statistics.median(pushes):6.2f}  "
          f"p99 {percentile(pushes, 0.99):6.2f}  max {max(pushes):6.2f}")
    print(f"  callback answered p50 {statistics.median(callbacks):6.2f}  "
          f"p99 {percentile(callbacks, 0.99):6.2f}")
    per_connection = (after - before) / idle
    print(f"{idle} idle WebSocket viewers: RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB,"
          f" {per_connection:.1f} KiB per connection")
    print(f"  push under that load, 100 payments: p50 {statistics.median(loaded):6.2f} ms  "
          f"p99 {percentile(loaded, 0.99):6.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
         int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
