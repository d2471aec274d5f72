"""check-access and generate-qris throughput at 50 connections, against a bare aiohttp
hello-world measured in the same run (target: check-access >= 0.4 of hello-world).

    .venv/bin/python bench/api_throughput.py [seconds]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import aiohttp

from bench.tools import ServerProcess, WrkResult, hello_server, wrk

NEW_VIEWER_QR = """
wrk.method = "POST"
wrk.body = '{"streamId":"demo"}'
wrk.headers["Content-Type"] = "application/json"
"""


async def paid_viewer(base_url: str) -> tuple[str, str]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url, cookie_jar=jar) as browser:
        async with browser.post("/api/generate-qris", json={"streamId": "demo"}) as response:
            qr = (await response.json())["data"]
        async with browser.post(f"/simulator/pay/{qr['trxId']}") as response:
            assert (await response.json())["data"]["applied"]
        cookie = jar.filter_cookies(browser._build_url("/"))["viewer"].value
    return f"viewer={cookie}", qr["sessionId"]


def median_run(url: str, rounds: int, seconds: int, **kwargs: object) -> WrkResult:
    runs = sorted((wrk(url, seconds=seconds, **kwargs) for _ in range(rounds)),  # type: ignore[arg-type]
                  key=lambda result: result.requests_per_s)
    return runs[len(runs) // 2]


def main(seconds: int, rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # BENCH_LOG_LEVEL=WARNING shows what the per-request log lines cost.
        env = {"GATEWAY_VAR_DIR": tmp, "GATEWAY_STORE": f"sqlite:///{Path(tmp) / 'g.db'}", "GATEWAY_QR_RATE_PER_ADDRESS": "0", "GATEWAY_QR_RATE_PER_VIEWER": "0",
               "GATEWAY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO")}
        gateway = ServerProcess(env).start()
        try:
            cookie, session_id = asyncio.run(paid_viewer(gateway.url))
            access_url = f"{gateway.url}/api/check-access?streamId=demo&sessionId={session_id}"
            hello_runs, access_runs = [], []
            with hello_server() as hello_url:
                # Alternate the two, so that a noisy neighbour hits both alike.
                for _ in range(rounds):
                    hello_runs.append(wrk(hello_url, seconds=seconds))
                    access_runs.append(wrk(access_url, seconds=seconds,
                                           headers={"Cookie": cookie}))
            repeat_qr = median_run(f"{gateway.url}/api/generate-qris", rounds, seconds,
                                   headers={"Cookie": cookie}, script=NEW_VIEWER_QR)
            new_qr = median_run(f"{gateway.url}/api/generate-qris", rounds, seconds,
                                script=NEW_VIEWER_QR)
        finally:
            gateway.stop()
    hello = sorted(hello_runs, key=lambda r: r.requests_per_s)[rounds // 2]
    access = sorted(access_runs, key=lambda r: r.requests_per_s)[rounds // 2]
    ratios = sorted(a.requests_per_s / h.requests_per_s for a, h in zip(access_runs, hello_runs, strict=True))
    print(f"wrk -t1 -c50 -d{seconds}s, median of {rounds} alternating rounds, same machine")
    print(f"hello-world                     {hello}")
    print(f"check-access (paid, cookie)     {access}   ratio {ratios[rounds // 2]:.2f}"
          f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"generate-qris (409, paid)       {repeat_qr}   ratio "
          f"{repeat_qr.requests_per_s / hello.requests_per_s:.2f}")
    print(f"generate-qris (new session)     {new_qr}   ratio "
          f"{new_qr.requests_per_s / hello.requests_per_s:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
