"""The gate against nginx serving the same files, same machine, same wrk settings.

(a) nginx, one worker, sendfile, straight from disk;
(b) the gate with a valid path token, from a directory origin (sendfile);
(c) the gate with a valid path token, from an HTTP origin (that nginx), through its
    single-flight cache;
(d) for reference, the ceiling of any aiohttp handler: the same bytes from memory with
    no checks at all (bench/bare_files.py), on asyncio's loop and on uvloop's.
Then the upstream load: 200 concurrent viewers of one segment, upstream fetches counted.
Targets: segments >= 0.6 of nginx, playlists >= 0.3, one upstream fetch per segment.

    .venv/bin/python -m bench.gate_vs_nginx [seconds] [rounds]
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
from pathlib import Path

import aiohttp

from bench.tools import ServerProcess, WrkResult, free_port, wrk

SEGMENT_BYTES = 200 * 1024
PLAYLIST = "".join(
    ["#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1000\n"]
    + [f"#EXTINF:2.000,\nseg{n}.ts\n" for n in range(1000, 1006)]
)


def nginx_config(root: Path, port: int, prefix: Path) -> Path:
    config = prefix / "nginx.conf"
    config.write_text(rf"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
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


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def path_token_base(gateway_url: str, stream_id: str) -> str:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(gateway_url, cookie_jar=jar) as browser:
        async with browser.post("/api/generate-qris", json={"streamId": stream_id}) as response:
            qr = (await response.json())["data"]
        async with browser.post(f"/simulator/pay/{qr['trxId']}") as response:
            assert (await response.json())["data"]["applied"]
        async with browser.get("/api/check-access", params={"streamId": stream_id}) as response:
            url = (await response.json())["data"]["tokenPlaybackUrl"]
    return gateway_url + url.rsplit("/", 1)[0]


async def upstream_fetches_for(segment_url: str, viewers: int) -> int:
    connector = aiohttp.TCPConnector(limit=viewers)
    async with aiohttp.ClientSession(connector=connector) as client:
        async def one() -> int:
            async with client.get(segment_url) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one() for _ in range(viewers)))
    assert statuses == [200] * viewers, set(statuses)
    return viewers


def print_round(number: int, results: dict[str, WrkResult]) -> None:
    print(f"round {number}:")
    for name, result in results.items():
        kind = name.split()[0]
        ratio = result.requests_per_s / results[f"{kind:8s} nginx"].requests_per_s
        print(f"  {name:50s} {result}   ratio {ratio:.2f}", flush=True)


def main(seconds: int, round_count: int) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        sys.exit("bench: nginx is needed (apt-get install nginx-light)")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "media"
        root.mkdir()
        (root / "seg1003.ts").write_bytes(os.urandom(SEGMENT_BYTES))
        (root / "index.m3u8").write_text(PLAYLIST)
        for name in ("seg2000.ts", "seg2001.ts"):
            (root / name).write_bytes(os.urandom(SEGMENT_BYTES))
        nginx_port = free_port()
        nginx = subprocess.Popen([nginx_bin, "-c", str(nginx_config(root, nginx_port,
                                                                       Path(tmp))),
                                  "-p", tmp], stderr=subprocess.DEVNULL)
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        wait_for(f"{nginx_url}/index.m3u8")
        catalog = Path(tmp) / "streams.toml"
        catalog.write_text(
            f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\norigin = "file://{root}/"\n'
            f'[[stream]]\nid = "http"\ntitle = "h"\nprice = 1000\norigin = "{nginx_url}/"\n')
        bare_servers: dict[str, str] = {}
        bare_processes = []
        for loop in ("asyncio", "uvloop"):
            if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
                print("bench: uvloop not installed (pip install -e .[bench]): "
                      "no uvloop ceiling row")
                continue
            bare_port = free_port()
            bare_processes.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).parent / "bare_files.py"), str(bare_port),
                 str(root)] + (["uvloop"] if loop == "uvloop" else [])))
            bare_servers[f"bare aiohttp ({loop}), bytes from memory"] = (
                f"http://127.0.0.1:{bare_port}")
        for bare_url in bare_servers.values():
            wait_for(f"{bare_url}/index.m3u8")
        gateway = ServerProcess({"GATEWAY_VAR_DIR": tmp, "GATEWAY_STREAMS": str(catalog),
                                 "GATEWAY_STORE": f"sqlite:///{tmp}/g.db", "GATEWAY_QR_RATE_PER_ADDRESS": "0", "GATEWAY_QR_RATE_PER_VIEWER": "0"}).start()
        rounds: list[dict[str, WrkResult]] = []
        try:
            dir_base = asyncio.run(path_token_base(gateway.url, "dir"))
            http_base = asyncio.run(path_token_base(gateway.url, "http"))
            systems = (("nginx", nginx_url), ("gate, directory origin", dir_base),
                       ("gate, HTTP origin (nginx) + cache", http_base),
                       *bare_servers.items())
            # This VM's speed drifts from minute to minute: every round measures every
            # system, and each ratio is against nginx in the same round.
            for _ in range(round_count):
                results: dict[str, WrkResult] = {}
                for name, base in systems:
                    results[f"segment  {name}"] = wrk(f"{base}/seg1003.ts", seconds=seconds)
                    results[f"playlist {name}"] = wrk(f"{base}/index.m3u8", seconds=seconds)
                rounds.append(results)
                print_round(len(rounds), results)
            for segment in ("seg2000.ts", "seg2001.ts"):
                asyncio.run(upstream_fetches_for(f"{http_base}/{segment}", 200))
            log = Path(tmp) / "upstream.log"
            upstream_lines = log.read_text().splitlines() if log.exists() else []
        finally:
            gateway.stop()
            for process in (nginx, *bare_processes):
                process.terminate()
                process.wait()
    print(f"\nwrk -t1 -c50 -d{seconds}s, {round_count} rounds; segment "
          f"{SEGMENT_BYTES // 1024} KB, playlist {len(PLAYLIST)} B; median of the rounds:")
    for name in rounds[0]:
        kind = name.split()[0]
        ratios = [results[name].requests_per_s / results[f"{kind:8s} nginx"].requests_per_s
                  for results in rounds]
        print(f"{name:50s} {statistics.median(r[name].requests_per_s for r in rounds):8.0f}"
              f" req/s {statistics.median(r[name].mb_per_s for r in rounds):8.1f} MB/s"
              f"   ratio {statistics.median(ratios):.2f}"
              f" (rounds {', '.join(f'{ratio:.2f}' for ratio in ratios)})")
    for segment in ("seg2000.ts", "seg2001.ts"):
        fetches = sum(f"/{segment} " in line for line in upstream_lines)
        print(f"200 concurrent viewers of {segment}: {fetches} upstream fetch(es)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10,
         int(sys.argv[2]) if len(sys.argv) > 2 else 3)
