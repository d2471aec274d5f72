"""Paid-to-push across instances: two gateway processes on one Redis store.

Each viewer watches its session on instance A while the provider's signed callback
lands on instance B, so `paid` reaches the viewer through the store's pub/sub. For
comparison, the same payments with the callback landing on A itself (same store).

    .venv/bin/python -m bench.push_across_instances [payments] [redis_url]
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import tempfile

import redis

from bench.push_latency import API_KEY, WEBHOOK_SECRET, payments, percentile
from bench.tools import ServerProcess

SECRET = "c" * 40


def main(count: int, redis_url: str) -> None:
    prefix = f"bench-{secrets.token_hex(6)}:"
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):
            servers.append(ServerProcess({
                "GATEWAY_VAR_DIR": f"{tmp}/{name}", "GATEWAY_STORE": redis_url, "GATEWAY_QR_RATE_PER_ADDRESS": "0", "GATEWAY_QR_RATE_PER_VIEWER": "0",
                "GATEWAY_REDIS_KEY_PREFIX": prefix, "GATEWAY_SECRET": SECRET,
                "GATEWAY_API_KEY": API_KEY, "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GATEWAY_LOG_LEVEL": "WARNING"}).start())
        a, b = servers
        try:
            same, _ = asyncio.run(payments(a.url, count))
            across, callbacks = asyncio.run(payments(a.url, count, callback_base=b.url,
                                                     viewer_prefix="across"))
        finally:
            for server in servers:
                server.stop()
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
    print(f"{count} payments each way, one at a time, Redis store at {redis_url} "
          "(ms from sending the signed callback to the viewer's socket hearing 'paid'):")
    for label, values in (("callback on the viewer's instance", same),
                          ("callback on the other instance", across),
                          ("  (that callback answered)", callbacks)):
        print(f"  {label:36s} p50 {statistics.median(values):6.2f}  "
              f"p99 {percentile(values, 0.99):6.2f}  max {max(values):6.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
         sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/14")
