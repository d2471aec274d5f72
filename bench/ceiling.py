"""The ceiling, measured against nginx under different settings (issue 15, point 3).

bench/README.md recorded a bare aiohttp handler at 0.37-0.49 of nginx on segments, and
another run put it at 0.55-0.64 with the same kind of handler. This runs the settings
that could differ side by side: nginx's (sendfile, access log, workers, keepalive
requests), the loop under the handler (asyncio, uvloop), and wrk's (one thread and 50
connections, pinned away from the server or not, two threads and 100 connections).
Each server's own CPU time per response is given next to its req/s: unlike req/s it
does not depend on how the machine's cores were shared during the run.

    .venv/bin/pip install -e .[bench]   # uvloop, for the uvloop row
    .venv/bin/python -m bench.ceiling [seconds] [rounds]

Defaults: 3 s per measurement, 3 rounds: about 3.5 minutes.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.gate_vs_nginx import (
    OBJECTS,
    SERVER_CPU,
    WRK_CPU,
    Measured,
    System,
    cpu_seconds,
    nginx_binary,
    nginx_config,
    pin,
    wait_for,
    with_children,
    write_media,
)
from bench.tools import free_port, wrk

NGINX_VARIANTS: dict[str, dict[str, object]] = {
    "nginx: 1 worker, sendfile, no access log (bench/gate_vs_nginx.py)": {},
    "nginx: sendfile off": {"sendfile": False},
    "nginx: access log on": {"access_log": True},
    "nginx: 2 workers": {"workers": "2"},
    "nginx: keepalive_requests 1000 (nginx's default)": {"keepalive_requests": 1000},
}
BASE_NGINX = next(iter(NGINX_VARIANTS))
# How wrk is run: (threads, connections, pinned).
WRK_MODES = {"wrk -t1 -c50": (1, 50, False), "wrk -t1 -c50, pinned": (1, 50, True),
             "wrk -t2 -c100": (2, 100, False)}


@dataclass(frozen=True)
class WithClient(Measured):
    # wrk's own CPU time per response: when it nears 1e6 / req/s per thread, wrk is
    # what limits the figure, not the server.
    wrk_cpu_us_per_request: float


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(system: System, file: str, seconds: int, mode: str) -> WithClient:
    threads, connections, pinned = WRK_MODES[mode]
    for pid in system.pids:
        pin(pid, SERVER_CPU if pinned else f"0-{(os.cpu_count() or 1) - 1}")
    cpu_before, client_before = cpu_seconds(system.pids), children_cpu_seconds()
    result = wrk(f"{system.url}/{file}", seconds=seconds, threads=threads,
                 connections=connections, cpus=WRK_CPU if pinned else None)
    cpu = cpu_seconds(system.pids) - cpu_before
    client = children_cpu_seconds() - client_before
    requests = max(1, result.requests)
    return WithClient(result, cpu * 1e6 / requests, client * 1e6 / requests)


def main(seconds: int, round_count: int) -> None:
    nginx_bin = nginx_binary()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = write_media(tmp / "media")
        processes: list[subprocess.Popen[bytes]] = []
        systems: dict[str, System] = {}
        try:
            for number, (name, options) in enumerate(NGINX_VARIANTS.items()):
                port = free_port()
                config = nginx_config(root, port, tmp, name=f"nginx{number}",
                                      **options)  # type: ignore[arg-type]
                processes.append(subprocess.Popen(
                    [nginx_bin, "-c", str(config), "-p", tmp_name], stderr=subprocess.DEVNULL))
                systems[name] = System(f"http://127.0.0.1:{port}", ())
            loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
            for loop in loops:
                port = free_port()
                processes.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).parent / "bare_files.py"), str(port),
                     str(root)] + (["uvloop"] if loop == "uvloop" else [])))
                systems[f"bare aiohttp, {loop}"] = System(f"http://127.0.0.1:{port}", ())
            for (name, system), process in zip(systems.items(), processes, strict=True):
                wait_for(f"{system.url}/{OBJECTS['playlist']}")
                systems[name] = System(system.url, with_children(process.pid))
            # Every setting under the usual wrk; the usual pair under the other wrk modes.
            plan = [(name, "wrk -t1 -c50") for name in systems] + [
                (name, mode) for mode in list(WRK_MODES)[1:]
                for name in (BASE_NGINX, "bare aiohttp, asyncio")]
            rounds: list[dict[tuple[str, str, str], WithClient]] = []
            for number in range(round_count):
                results: dict[tuple[str, str, str], WithClient] = {}
                for kind, file in OBJECTS.items():
                    for name, mode in (plan if number % 2 == 0 else plan[::-1]):
                        results[kind, name, mode] = measure(systems[name], file, seconds, mode)
                rounds.append(results)
                print(f"round {number + 1} done", flush=True)
        finally:
            for process in processes:
                process.terminate()
                process.wait()
    print_table(rounds, seconds)


def print_table(rounds: list[dict[tuple[str, str, str], WithClient]], seconds: int) -> None:
    print(f"\n{seconds} s per measurement, {len(rounds)} rounds, medians; 'bare / this': "
          "the bare asyncio handler's req/s over this row's in the same round and wrk "
          "mode, and the same by CPU time per response\n")
    print("| object | server | wrk | req/s | CPU per response | wrk's CPU per response "
          "| bare / this, req/s | bare / this, by CPU |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, name, mode in rounds[0]:
        runs = [r[kind, name, mode] for r in rounds]
        bares = [r[kind, "bare aiohttp, asyncio", mode] for r in rounds]
        by_rps = statistics.median(bare.wrk.requests_per_s / run.wrk.requests_per_s
                                   for run, bare in zip(runs, bares, strict=True))
        by_cpu = statistics.median(run.cpu_us_per_request / bare.cpu_us_per_request
                                   for run, bare in zip(runs, bares, strict=True))
        print(f"| {kind} | {name} | {mode} | "
              f"{statistics.median(run.wrk.requests_per_s for run in runs):,.0f} | "
              f"{statistics.median(run.cpu_us_per_request for run in runs):.0f} us | "
              f"{statistics.median(run.wrk_cpu_us_per_request for run in runs):.0f} us | "
              f"{by_rps:.2f} | {by_cpu:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3,
         int(sys.argv[2]) if len(sys.argv) > 2 else 3)
