"""The Python gate's req/s with GATEWAY_WORKERS=1 and 2, side by side (issue 26).

One gateway at a time on Redis (its own key prefix), a directory origin, one paid
viewer's path-token URL; wrk asks for a 200 KB segment and for the playlist with 50
connections. Nothing is pinned: two workers need both cores of this 2-core machine, so
wrk shares them, and the figure for 2 workers is what one machine gives with its load
generator on it, not what two dedicated cores would.

    .venv/bin/python -m bench.gate_workers [seconds] [rounds]

Defaults: 5 s per measurement, 3 rounds (about a minute and a half).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from bench.gate_vs_nginx import OBJECTS, cpu_seconds, path_token_base, with_children, write_media
from bench.tools import ServerProcess, WrkResult, wrk

REDIS_URL = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


Measured = tuple[WrkResult, float]  # wrk's figures, the gateway's CPU-us per request


def measure(workers: int, seconds: int, root: Path, tmp: Path) -> dict[str, Measured]:
    catalog = tmp / "streams.toml"
    catalog.write_text(f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\n'
                       f'origin = "file://{root}/"\n')
    gateway = ServerProcess({
        "GATEWAY_VAR_DIR": str(tmp), "GATEWAY_STREAMS": str(catalog),
        "GATEWAY_STORE": REDIS_URL, "GATEWAY_REDIS_KEY_PREFIX": f"bench-{secrets.token_hex(4)}:",
        "GATEWAY_SECRET": "bench-secret-" + "x" * 32, "GATEWAY_WEBHOOK_SECRET": "w" * 32,
        "GATEWAY_API_KEY": "k" * 32, "GATEWAY_WORKERS": str(workers),
    }, log_path=tmp / "gateway.log").start()
    try:
        base = asyncio.run(path_token_base(gateway.url, "dir"))
        wrk(f"{base}/{OBJECTS['segment']}", seconds=1)  # warm both workers' caches
        assert gateway.process is not None
        pids = with_children(gateway.process.pid)  # the supervisor and its workers
        measured: dict[str, Measured] = {}
        for name, file in OBJECTS.items():
            cpu_before = cpu_seconds(pids)
            result = wrk(f"{base}/{file}", seconds=seconds, connections=50)
            cpu_us = (cpu_seconds(pids) - cpu_before) * 1e6 / max(1, result.requests)
            measured[name] = (result, cpu_us)
        return measured
    finally:
        gateway.stop()


def main(seconds: int, round_count: int) -> None:
    print(f"cores: {os.cpu_count()}; wrk: 1 thread, 50 connections, {seconds} s; "
          f"{round_count} rounds, medians")
    rounds: dict[tuple[int, str], list[Measured]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = write_media(tmp / "media")
        for round_number in range(round_count):
            order = (1, 2) if round_number % 2 == 0 else (2, 1)
            for workers in order:
                (tmp / f"w{workers}-{round_number}").mkdir()
                results = measure(workers, seconds, root, tmp / f"w{workers}-{round_number}")
                for name, (result, cpu_us) in results.items():
                    rounds.setdefault((workers, name), []).append((result, cpu_us))
                    print(f"  round {round_number + 1}, {workers} worker(s), {name:8}: "
                          f"{result}  {cpu_us:5.0f} CPU-us/req")
    # CPU-us per request says what a core buys; req/s says what this machine gave with
    # wrk on it. Two workers on two cores beside wrk: three busy processes, two cores.
    print(f"\n{'':10} {'req/s, 1 worker':>16} {'2 workers':>10} {'ratio':>6}"
          f" {'p99 ms, 1w':>11} {'2w':>6} {'CPU-us/req, 1w':>15} {'2w':>5}")
    for name in OBJECTS:
        one, two = rounds[(1, name)], rounds[(2, name)]
        one_rps = statistics.median(result.requests_per_s for result, _ in one)
        two_rps = statistics.median(result.requests_per_s for result, _ in two)
        errors = sum(result.non_2xx + result.socket_errors for result, _ in one + two)
        print(f"{name:10} {one_rps:16,.0f} {two_rps:10,.0f} {two_rps / one_rps:6.2f}"
              f" {statistics.median(r.p99_ms for r, _ in one):11.2f}"
              f" {statistics.median(r.p99_ms for r, _ in two):6.2f}"
              f" {statistics.median(cpu for _, cpu in one):15.0f}"
              f" {statistics.median(cpu for _, cpu in two):5.0f}"
              + (f"  errors {errors}" if errors else ""))


if __name__ == "__main__":
    arguments = [int(value) for value in sys.argv[1:3]]
    main(*(arguments + [5, 3][len(arguments):]))
