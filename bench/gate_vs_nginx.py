"""The gate against a bare aiohttp handler and nginx, same files, same machine, one run.

(a) nginx, one worker, sendfile, straight from disk;
(b) a bare aiohttp handler returning the same bytes from memory with no checks at all
    (bench/bare_files.py), run like the gateway: asyncio's loop, no access log; and
    (b+) the same handler inside a gateway process (bench/bare_in_gateway.py), so the
    table also shows the gate against a handler with no checks in its own process;
(c) the gate with a valid path token, from a directory origin;
(d) the gate with a valid path token, from an HTTP origin (that nginx), through its cache;
(e) the bare handler of (b) sent the very request the gate gets: the same path-token URL
    (and with --cookie, the cookie form's URL and Cookie header), so "/ bare, same
    request" leaves out what that request costs any aiohttp handler.
Every round measures every system on the segment and then on the playlist, the order
reversed every other round, so a neighbour's burst hits them alike; each ratio is taken
within its round and the table gives the medians.
Targets: the gate >= 0.9 of the bare handler (issue 15), one upstream fetch per segment
for 200 concurrent viewers (issue 3).

    .venv/bin/python -m bench.gate_vs_nginx [seconds] [rounds] [--pin] [--uvloop] [--cookie]

--pin: servers on CPU 0, wrk on CPU 1 (taskset), so wrk never takes the server's core.
--uvloop: also a bare handler on uvloop (the `bench` extra), to show a faster loop.
--cookie: also the gate with the token in its cookie, as the watch page's player sends it.
Defaults: 4 s per measurement, 4 rounds: about 4 minutes in all.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.tools import ServerProcess, WrkResult, free_port, wrk

SEGMENT_BYTES = 200 * 1024
PLAYLIST = "".join(
    ["#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1000\n"]
    + [f"#EXTINF:2.000,\nseg{n}.ts\n" for n in range(1000, 1006)]
)
OBJECTS = {"segment": "seg1003.ts", "playlist": "index.m3u8"}
SERVER_CPU, WRK_CPU = "0", "1"
IN_GATEWAY = "bare, in a gateway process"
AT_GATE_URL = "bare, at the gate's URL"
WITH_GATE_COOKIE = "bare, at the cookie form's URL"
# Each gate's same request sent to the bare handler; the HTTP origin's URL differs from
# the directory origin's only in the stream id, a character or two of the token.
SAME_REQUEST = {"gate, directory origin": AT_GATE_URL, "gate, HTTP origin": AT_GATE_URL,
                "gate, directory origin, cookie": WITH_GATE_COOKIE}


def nginx_binary() -> str:
    """Debian's nginx, or the end of the bench."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        sys.exit("bench: nginx is needed (apt-get install nginx)")
    return found


def write_media(root: Path) -> Path:
    """The benchmarks' stream: a playlist and a 200 KB segment of random bytes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / OBJECTS["segment"]).write_bytes(os.urandom(SEGMENT_BYTES))
    (root / OBJECTS["playlist"]).write_text(PLAYLIST)
    return root


def nginx_config(root: Path, port: int, prefix: Path, *, name: str = "nginx",
                 workers: str = "1", sendfile: bool = True, access_log: bool = False,
                 keepalive_requests: int = 100000, open_file_cache: bool = False) -> Path:
    """The nginx of these benchmarks; bench/ceiling.py varies the arguments, bench/edge.py
    adds the open file cache the edge's configuration has."""
    config = prefix / f"{name}.conf"
    log = f"{prefix}/{name}-access.log" if access_log else "off"
    config.write_text(rf"""
worker_processes {workers};
daemon off;
pid {prefix}/{name}.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {log};
    sendfile {"on" if sendfile else "off"};
    tcp_nopush on;
    keepalive_requests {keepalive_requests};
    {"open_file_cache max=16384 inactive=20s; open_file_cache_valid 1s;"
     if open_file_cache else ""}
    types {{ video/mp2t ts; application/vnd.apple.mpegurl m3u8; }}
    client_body_temp_path {prefix}; proxy_temp_path {prefix}; fastcgi_temp_path {prefix};
    uwsgi_temp_path {prefix}; scgi_temp_path {prefix};
    server {{
        listen 127.0.0.1:{port};
        root {root};
        # Only the segments of the upstream-load test are logged: one line per fetch.
        location ~ ^/seg200[01]\.ts$ {{ access_log {prefix}/upstream.log; }}
    }}
}}
""")
    return config


def wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling for readiness
    raise RuntimeError(f"{url} did not come up")


def pin(pid: int, cpus: str) -> None:
    """Every thread of a running process onto `cpus`."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


async def path_token_base(gateway_url: str, stream_id: str) -> str:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(gateway_url, cookie_jar=jar) as browser:
        async with browser.post("/api/generate-qris", json={"streamId": stream_id}) as response:
            qr = (await response.json())["data"]
        async with browser.post(f"/simulator/pay/{qr['trxId']}") as response:
            assert (await response.json())["data"]["applied"]
        async with browser.get("/api/check-access", params={"streamId": stream_id}) as response:
            url = (await response.json())["data"]["tokenPlaybackUrl"]
    return gateway_url + str(url).rsplit("/", 1)[0]


async def upstream_fetches_for(segment_url: str, viewers: int) -> None:
    connector = aiohttp.TCPConnector(limit=viewers)
    async with aiohttp.ClientSession(connector=connector) as client:
        async def one() -> int:
            async with client.get(segment_url) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one() for _ in range(viewers)))
    assert statuses == [200] * viewers, set(statuses)


@dataclass(frozen=True)
class System:
    url: str  # the base URL the objects are under
    pids: tuple[int, ...]  # whose CPU time serving them costs
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request


@dataclass
class Bench:
    """The running systems by name, and what the upstream test needs."""

    systems: dict[str, System]
    tmp: Path
    http_base: str


@dataclass(frozen=True)
class Measured:
    wrk: WrkResult
    # The server's own CPU time (user + system, all threads) per response: unlike req/s,
    # barely moved by a neighbour taking the core for a while.
    cpu_us_per_request: float


def cpu_seconds(pids: tuple[int, ...]) -> float:
    total_ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total_ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return total_ticks / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> tuple[int, ...]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return (pid, *map(int, children))


def gate_cookie_header(path_token_base_url: str) -> tuple[tuple[str, str], ...]:
    """The Cookie header a browser on the watch page sends with each media request: the
    viewer cookie and the gate cookie, whose token is the one in `path_token_base_url`."""
    token = path_token_base_url.rsplit("/t/", 1)[1]
    return (("Cookie", f"viewer=v1.{'x' * 40}.{'y' * 43}; gate={token}"),)


@contextmanager
def running_systems(*, pinned: bool, uvloop: bool, cookie: bool = False,
                    gateway_env: dict[str, str] | None = None) -> Iterator[Bench]:
    """nginx, the bare handler(s) and one gateway with a directory and an HTTP stream,
    each path-token URL already paid for."""
    nginx_bin = nginx_binary()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = write_media(tmp / "media")
        for name in ("seg2000.ts", "seg2001.ts"):
            (root / name).write_bytes(os.urandom(SEGMENT_BYTES))
        processes: list[subprocess.Popen[bytes]] = []
        gateway: ServerProcess | None = None
        try:
            nginx_port = free_port()
            processes.append(subprocess.Popen(
                [nginx_bin, "-c", str(nginx_config(root, nginx_port, tmp)), "-p", tmp_name],
                stderr=subprocess.DEVNULL))
            nginx_url = f"http://127.0.0.1:{nginx_port}"
            urls = {"nginx": nginx_url}
            loops = ["asyncio"]
            if uvloop:
                if importlib.util.find_spec("uvloop") is None:
                    sys.exit("bench: uvloop not installed (pip install -e .[bench])")
                loops.append("uvloop")
            for loop in loops:
                bare_port = free_port()
                processes.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).parent / "bare_files.py"),
                     str(bare_port), str(root)] + (["uvloop"] if loop == "uvloop" else [])))
                urls["bare" if loop == "asyncio" else "bare, uvloop"] = (
                    f"http://127.0.0.1:{bare_port}")
            catalog = tmp / "streams.toml"
            catalog.write_text(
                f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\norigin = "file://{root}/"\n'
                f'[[stream]]\nid = "http"\ntitle = "h"\nprice = 1000\norigin = "{nginx_url}/"\n')
            gateway = ServerProcess({"GATEWAY_VAR_DIR": tmp_name,
                                     "GATEWAY_STREAMS": str(catalog),
                                     "GATEWAY_STORE": f"sqlite:///{tmp}/g.db",
                                     **(gateway_env or {})}).start()
            in_gateway_port = free_port()
            (tmp / "in-gateway").mkdir()
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "bench.bare_in_gateway"], cwd=Path(__file__).parent.parent,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "GATEWAY_VAR_DIR": str(tmp / "in-gateway"),
                     "GATEWAY_STREAMS": str(catalog), "PORT": str(in_gateway_port),
                     "GATEWAY_STORE": f"sqlite:///{tmp}/in-gateway/g.db",
                     "BENCH_BARE_DIR": str(root), **(gateway_env or {})}))
            urls[IN_GATEWAY] = f"http://127.0.0.1:{in_gateway_port}/bare"
            for url in urls.values():
                wait_for(f"{url}/{OBJECTS['playlist']}")
            http_base = asyncio.run(path_token_base(gateway.url, "http"))
            assert gateway.process is not None
            gateway_pids = (gateway.process.pid,)
            systems = {"nginx": System(nginx_url, with_children(processes[0].pid))}
            for name, process in zip(list(urls)[1:], processes[1:], strict=True):
                systems[name] = System(urls[name], (process.pid,))
            dir_base = asyncio.run(path_token_base(gateway.url, "dir"))
            systems["gate, directory origin"] = System(dir_base, gateway_pids)
            systems["gate, HTTP origin"] = System(http_base, gateway_pids)
            bare = systems["bare"]
            systems[AT_GATE_URL] = System(bare.url + dir_base.removeprefix(gateway.url),
                                          bare.pids)
            if cookie:
                # The form a browser on the watch page uses: the token in the gate
                # cookie, next to the viewer cookie.
                cookie_header = gate_cookie_header(dir_base)
                systems["gate, directory origin, cookie"] = System(
                    f"{gateway.url}/hls/dir", gateway_pids, cookie_header)
                systems[WITH_GATE_COOKIE] = System(f"{bare.url}/hls/dir", bare.pids,
                                                   cookie_header)
            if pinned:
                for pid in {pid for system in systems.values() for pid in system.pids}:
                    pin(pid, SERVER_CPU)
            yield Bench(systems, tmp, http_base)
        finally:
            if gateway is not None:
                gateway.stop()
            for process in processes:
                process.terminate()
                process.wait()


def measure(system: System, file: str, seconds: int, pinned: bool) -> Measured:
    cpu_before = cpu_seconds(system.pids)
    result = wrk(f"{system.url}/{file}", seconds=seconds, cpus=WRK_CPU if pinned else None,
                 headers=dict(system.headers))
    cpu = cpu_seconds(system.pids) - cpu_before
    return Measured(result, cpu * 1e6 / max(1, result.requests))


def main(seconds: int, round_count: int, pinned: bool, uvloop: bool, cookie: bool) -> None:
    rounds: list[dict[tuple[str, str], Measured]] = []
    with running_systems(pinned=pinned, uvloop=uvloop, cookie=cookie) as bench:
        # Warm the gate's caches (and the HTTP origin's fetch) before anything counts.
        for system in bench.systems.values():
            for file in OBJECTS.values():
                urllib.request.urlopen(urllib.request.Request(
                    f"{system.url}/{file}", headers=dict(system.headers)), timeout=5).close()
        names = list(bench.systems)
        for number in range(round_count):
            order = names if number % 2 == 0 else names[::-1]
            results: dict[tuple[str, str], Measured] = {}
            for kind, file in OBJECTS.items():
                for name in order:
                    results[kind, name] = measure(bench.systems[name], file, seconds, pinned)
            rounds.append(results)
            print(f"round {number + 1}: " + "; ".join(
                f"{kind} {name} {result.wrk.requests_per_s:.0f}/s "
                f"{result.cpu_us_per_request:.0f} us"
                for (kind, name), result in results.items()), flush=True)
        for segment in ("seg2000.ts", "seg2001.ts"):
            asyncio.run(upstream_fetches_for(f"{bench.http_base}/{segment}", 200))
        log = bench.tmp / "upstream.log"
        upstream_lines = log.read_text().splitlines() if log.exists() else []
    print_table(rounds, seconds, pinned)
    for segment in ("seg2000.ts", "seg2001.ts"):
        fetches = sum(f"/{segment} " in line for line in upstream_lines)
        print(f"200 concurrent viewers of {segment}: {fetches} upstream fetch(es)")


def print_table(rounds: list[dict[tuple[str, str], Measured]], seconds: int,
                pinned: bool) -> None:
    def cell(values: list[float]) -> str:
        return (f"**{statistics.median(values):.2f}** "
                f"({', '.join(f'{value:.2f}' for value in values)})")

    names = list(dict.fromkeys(name for _, name in rounds[0]))
    print(f"\nwrk -t1 -c50 -d{seconds}s, {len(rounds)} rounds"
          f"{', servers on CPU 0 and wrk on CPU 1' if pinned else ''}; segment "
          f"{SEGMENT_BYTES // 1024} KB, playlist {len(PLAYLIST)} B; medians, the rounds in "
          "brackets.\nx / bare: x's req/s over the bare handler's in the same round; "
          "by CPU: the bare handler's CPU time per response over x's; / bare in a gateway "
          "process: the same handler inside the gateway's process, req/s; / bare, same request: "
          "the bare handler sent the gate's own request (URL, cookie), req/s.\n")
    print("| object | system | req/s | CPU per response | / bare, req/s | / bare, by CPU "
          "| / bare in a gateway process, req/s | / bare, same request, req/s "
          "| / nginx, req/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in OBJECTS:
        for name in names:
            runs = [r[kind, name] for r in rounds]
            bares = [r[kind, "bare"] for r in rounds]
            in_gateway = [run.wrk.requests_per_s / r[kind, IN_GATEWAY].wrk.requests_per_s
                          for run, r in zip(runs, rounds, strict=True)]
            same_request = [
                run.wrk.requests_per_s / r[kind, SAME_REQUEST[name]].wrk.requests_per_s
                for run, r in zip(runs, rounds, strict=True)] if name in SAME_REQUEST else []
            nginxes = [r[kind, "nginx"] for r in rounds]
            errors = sum(run.wrk.non_2xx for run in runs)
            by_rps = [run.wrk.requests_per_s / bare.wrk.requests_per_s
                      for run, bare in zip(runs, bares, strict=True)]
            by_cpu = [bare.cpu_us_per_request / run.cpu_us_per_request
                      for run, bare in zip(runs, bares, strict=True)]
            to_nginx = [run.wrk.requests_per_s / nginx.wrk.requests_per_s
                        for run, nginx in zip(runs, nginxes, strict=True)]
            print(f"| {kind} | {name}{f' ({errors} non-2xx!)' if errors else ''} | "
                  f"{statistics.median(run.wrk.requests_per_s for run in runs):,.0f} | "
                  f"{statistics.median(run.cpu_us_per_request for run in runs):.0f} us | "
                  f"{'1' if name == 'bare' else cell(by_rps)} | "
                  f"{'1' if name == 'bare' else cell(by_cpu)} | "
                  f"{cell(in_gateway) if name.startswith('gate') else ''} | "
                  f"{cell(same_request) if same_request else ''} | "
                  f"{'1' if name == 'nginx' else cell(to_nginx)} |")


if __name__ == "__main__":
    flags = {arg for arg in sys.argv[1:] if arg.startswith("--")}
    numbers = [int(arg) for arg in sys.argv[1:] if not arg.startswith("--")]
    unknown = flags - {"--pin", "--uvloop", "--cookie"}
    if unknown:
        sys.exit(f"bench: unknown option {', '.join(sorted(unknown))}")
    main(numbers[0] if numbers else 4, numbers[1] if len(numbers) > 1 else 4,
         "--pin" in flags, "--uvloop" in flags, "--cookie" in flags)
