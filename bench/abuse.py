"""Abuse, measured (issue 10), on loopback only, against one `gateway serve`:

    .venv/bin/python -m bench.abuse flood [clients]     # slow clients vs /healthz latency
    .venv/bin/python -m bench.abuse memory [tokens]     # RSS after unique junk tokens
    .venv/bin/python -m bench.abuse fuzz [examples]     # the suite's fuzzer, harder

flood: the service runs with a descriptor limit of 1,024 (soft and hard, so it cannot
raise it); `clients` connections (default 1,100) send headers and then trickle a body
one byte a second. Meanwhile /healthz is asked 50 times, one after another, on fresh
connections: its latency, and how many answered within 100 ms.

memory: RSS of the service, then after `tokens` (default 65,536) requests with unique
junk viewer cookies and as many with unique junk gate tokens, ~1 KB each (the longest a
token may be).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.tools import ROOT, ServerProcess

ENV = {"GATEWAY_QR_RATE_PER_ADDRESS": "0", "GATEWAY_QR_RATE_PER_VIEWER": "0",
       "GATEWAY_LOG_LEVEL": "WARNING", "GATEWAY_BODY_TIMEOUT_SECONDS": "10",
       "GATEWAY_HEADER_TIMEOUT_SECONDS": "10"}


def _server(tmp: str, descriptor_limit: int | None = None) -> ServerProcess:
    return ServerProcess({**ENV, "GATEWAY_VAR_DIR": tmp,
                          "GATEWAY_STORE": f"sqlite:///{tmp}/g.db"},
                         log_path=Path(tmp) / "gateway.log",
                         descriptor_limit=descriptor_limit).start()


def _healthz_ms(url: str) -> float | None:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            response.read()
    except OSError:
        return None
    return (time.perf_counter() - started) * 1000


def flood(clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = _server(tmp, descriptor_limit=1024)
        held: list[socket.socket] = []
        try:
            refused = 0
            for _ in range(clients):
                try:
                    sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
                    sock.sendall(b"POST /api/generate-qris HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Content-Length: 100000\r\n\r\n{")
                    held.append(sock)
                except OSError:
                    refused += 1
            latencies = []
            for _ in range(50):
                for sock in held[:50]:  # keep trickling
                    with contextlib.suppress(OSError):
                        sock.send(b" ")
                latencies.append(_healthz_ms(server.url))
            answered = [ms for ms in latencies if ms is not None]
            print(f"slow clients opened: {len(held)} (refused at connect: {refused}), "
                  f"descriptor limit 1024")
            print(f"/healthz: {len(answered)}/50 answered, "
                  f"{sum(ms < 100 for ms in answered)} within 100 ms; "
                  f"p50 {statistics.median(answered):.1f} ms, max {max(answered):.1f} ms"
                  if answered else "/healthz: no answer")
        finally:
            for sock in held:
                sock.close()
            server.stop()
        log = (Path(tmp) / "gateway.log").read_text()
        if "Traceback" in log:
            first = log.index("Traceback")
            print("first traceback:", log[first:first + 3000][-900:])
        print(f"log: {log.count('Traceback')} tracebacks, "
              f"{log.count('descriptors_exhausted')} descriptor-exhaustion lines")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _junk(url: str, tokens: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        queue = iter(range(tokens))

        async def worker() -> None:
            for _ in queue:
                junk = "aaaaaaaa." + secrets.token_urlsafe(720) + ".x"
                async with client.get(f"{url}/api/user-sessions",
                                      headers={"Cookie": f"viewer={junk}"}) as response:
                    await response.read()
                async with client.get(f"{url}/hls/demo/t/{junk}/index.m3u8") as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(32)))


def memory(tokens: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = _server(tmp)
        try:
            assert server.process is not None
            _healthz_ms(server.url)
            before = _rss_mb(server.process.pid)
            started = time.perf_counter()
            asyncio.run(_junk(server.url, tokens))
            after = _rss_mb(server.process.pid)
            print(f"{tokens} junk viewer cookies + {tokens} junk gate tokens (~1 KB each) "
                  f"in {time.perf_counter() - started:.0f} s")
            print(f"RSS {before:.1f} MB -> {after:.1f} MB: +{after - before:.1f} MB")
        finally:
            server.stop()


def fuzz(examples: int) -> None:
    env = {**os.environ, "GATEWAY_FUZZ_EXAMPLES": str(examples)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/test_fuzz.py"], cwd=ROOT, env=env, check=False)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "flood"
    amount = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if command == "flood":
        flood(amount or 1100)
    elif command == "memory":
        memory(amount or 65536)
    elif command == "fuzz":
        fuzz(amount or 200)
    else:
        sys.exit(__doc__)
