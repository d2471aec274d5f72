"""The gate with the device count against without it: same machine, same run.

Two gateway processes serve the same directory origin, one with GATEWAY_MAX_DEVICES=2
(every request counted), one with 0 (no counting at all). wrk fetches a 200 KB segment
and the playlist through a path token, alternating the two in ABBA order each round so
that the machine's drift falls on both. Target: counting costs at most 5% of segment
requests per second. Also prints how often the counted gate asked its store, and, as
a figure the shared machine's drift cannot swamp, the count's own cost per request
measured in-process (`PlaceCounter.admit` on a known place, the path every request of
a playing device takes).

    .venv/bin/python -m bench.gate_devices [seconds] [rounds]
    .venv/bin/python -m bench.gate_devices micro
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.gate_vs_nginx import PLAYLIST, SEGMENT_BYTES, path_token_base, write_media
from bench.tools import ServerProcess, WrkResult, wrk
from gateway.clock import system_clock_ms
from gateway.devices import Devices
from gateway.gate.places import PlaceCounter
from gateway.store.sqlite import open_sqlite

API_KEY = "bench-api-key-0123456789abcdef"
SYSTEMS = ("counted (limit 2)", "not counted (limit 0)")


def device_reports(gateway_url: str) -> int:
    request = urllib.request.Request(f"{gateway_url}/metrics", headers={"X-Api-Key": API_KEY})
    with urllib.request.urlopen(request, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("gateway_device_reports_total "):
                return int(float(line.split()[1]))
    raise RuntimeError("no gateway_device_reports_total in /metrics")


async def admit_cost_us(calls: int = 1_000_000) -> tuple[float, float]:
    """Microseconds per `admit` of a known place, and per loop turn doing nothing."""
    store = await open_sqlite(":memory:")
    try:
        devices = Devices(store.grants, system_clock_ms, max_devices=2)
        grant, _ = await store.grants.grant_for_device("session", "browser:x",
                                                       system_clock_ms(), "g", 0)
        counter = PlaceCounter(devices, system_clock_ms)
        expires_at_ms = system_clock_ms() + 3_600_000
        await counter.admit("session", grant.grant_id, expires_at_ms, "127.0.0.1")
        admit = counter.admit
        started = time.perf_counter()
        for _ in range(calls):
            await admit("session", grant.grant_id, expires_at_ms, "127.0.0.1")
        counted_s = time.perf_counter() - started

        async def nothing(*_: object) -> None:
            return None

        started = time.perf_counter()
        for _ in range(calls):
            await nothing("session", grant.grant_id, expires_at_ms, "127.0.0.1")
        empty_s = time.perf_counter() - started
        assert counter.store_reports <= 1 + calls // 100_000  # a report per 5 s at most
    finally:
        await store.close()
    return counted_s / calls * 1e6, empty_s / calls * 1e6


def print_micro() -> None:
    costs = [asyncio.run(admit_cost_us()) for _ in range(5)]
    counted = statistics.median(cost for cost, _ in costs)
    empty = statistics.median(empty for _, empty in costs)
    print(f"PlaceCounter.admit, known place: {counted:.3f} us per request "
          f"(an empty awaited call: {empty:.3f} us); median of 5 x 1,000,000")


def main(seconds: int, round_count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_media(Path(tmp) / "media")
        catalog = Path(tmp) / "streams.toml"
        catalog.write_text(
            f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\norigin = "file://{root}/"\n')
        gateways = {}
        for name, limit in zip(SYSTEMS, ("2", "0"), strict=True):
            var = Path(tmp) / limit
            gateways[name] = ServerProcess({
                "GATEWAY_VAR_DIR": str(var), "GATEWAY_STREAMS": str(catalog),
                "GATEWAY_STORE": f"sqlite:///{var}/g.db", "GATEWAY_MAX_DEVICES": limit,
                "GATEWAY_API_KEY": API_KEY, "GATEWAY_LOG_LEVEL": "WARNING"}).start()
        rounds: list[dict[str, WrkResult]] = []
        try:
            bases = {name: asyncio.run(path_token_base(gateway.url, "dir"))
                     for name, gateway in gateways.items()}
            requests_counted = 0
            for number in range(round_count):
                order = SYSTEMS if number % 2 == 0 else SYSTEMS[::-1]
                results: dict[str, WrkResult] = {}
                for kind, path in (("segment", "seg1003.ts"), ("playlist", "index.m3u8")):
                    for name in (*order, *order[::-1]):  # ABBA
                        result = wrk(f"{bases[name]}/{path}", seconds=seconds)
                        key = f"{kind:8s} {name}"
                        if key in results:  # the two runs of one round: their mean
                            first = results[key]
                            result = WrkResult(
                                (first.requests_per_s + result.requests_per_s) / 2,
                                (first.mb_per_s + result.mb_per_s) / 2,
                                max(first.p50_ms, result.p50_ms),
                                max(first.p99_ms, result.p99_ms),
                                first.non_2xx + result.non_2xx,
                                first.requests + result.requests,
                                first.socket_errors + result.socket_errors)
                        results[key] = result
                        if name == SYSTEMS[0]:
                            requests_counted += int(result.requests_per_s * seconds)
                rounds.append(results)
                print(f"round {number + 1}:")
                for key, result in results.items():
                    print(f"  {key:32s} {result}", flush=True)
            reports = device_reports(gateways[SYSTEMS[0]].url)
        finally:
            for gateway in gateways.values():
                gateway.stop()
    print(f"\nwrk -t1 -c50 -d{seconds}s, {round_count} rounds (ABBA within each); "
          f"segment {SEGMENT_BYTES // 1024} KB, playlist {len(PLAYLIST)} B; medians:")
    for kind in ("segment", "playlist"):
        counted = [r[f"{kind:8s} {SYSTEMS[0]}"].requests_per_s for r in rounds]
        free = [r[f"{kind:8s} {SYSTEMS[1]}"].requests_per_s for r in rounds]
        ratios = [c / f for c, f in zip(counted, free, strict=True)]
        print(f"{kind:8s} counted {statistics.median(counted):8.0f} req/s,"
              f" not counted {statistics.median(free):8.0f} req/s,"
              f" ratio {statistics.median(ratios):.3f}"
              f" (rounds {', '.join(f'{ratio:.3f}' for ratio in ratios)})")
    print(f"the counted gate asked its store {reports} times"
          f" for about {requests_counted} requests")
    print_micro()


if __name__ == "__main__":
    if sys.argv[1:] == ["micro"]:
        print_micro()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 10,
             int(sys.argv[2]) if len(sys.argv) > 2 else 3)
