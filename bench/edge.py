"""The edge (nginx serves, /gate/auth decides) against nginx alone and the Python gate.

Same machine, same bytes (a 200 KB segment and a playlist, from one directory), same wrk
settings (-t1 -c50), nginx with one worker in every case:
(a) nginx straight from disk, no checks; and (a+) the same with the open file cache the
    edge's configuration turns on, so that (b)'s ratio to it is the edge's checks alone;
(b) through the edge (`gateway nginx-config`) with a cached decision: one token;
(c) through the edge with a new decision for every request: each request a different
    valid token, so every request costs nginx an auth subrequest to the service;
(d) the Python gate, the service alone.
Prints req/s and the ratios to (a) and (a+). Targets for (b): segments >= 0.85,
playlists >= 0.65.

Then viewers: each viewer is one wrk connection with its own token, asking for the
playlist and a segment in turn with a pause of a second after each answer (one of each
every ~2 s). The count doubles until p99 latency reaches 500 ms (or the cap), then one
step bisects: the largest count measured under 500 ms, for (b) and (d).

    .venv/bin/python -m bench.edge [seconds] [viewer-cap]
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gate_vs_nginx import (
    PLAYLIST,
    SEGMENT_BYTES,
    nginx_binary,
    nginx_config,
    path_token_base,
    wait_for,
    write_media,
)
from bench.tools import ROOT, ServerProcess, WrkResult, free_port, wrk
from gateway.tokens import Keyring

SECRET = secrets.token_hex(32)
P99_LIMIT_MS = 500.0


def minted_tokens(count: int, stream_id: str) -> list[str]:
    """Valid access tokens for `count` sessions, signed as the service signs them (same
    secret, same purpose): the gate checks signature, stream and expiry in memory, so
    they need no sessions in the store. They let every request be a new decision.
    Each carries a device grant id too (issue 11); the service runs with
    GATEWAY_MAX_DEVICES=0, since these grants exist in no store to be counted against."""
    keys = Keyring(SECRET.encode(), (), purpose="hls")
    expires_ms = str(int(time.time() * 1000) + 3600_000)
    return [keys.sign(f"bench{n:07d}{secrets.token_hex(4)}", stream_id, expires_ms,
                      f"grant{n:07d}") for n in range(count)]


def token_file(tokens: list[str], directory: Path) -> Path:
    path = directory / f"tokens-{len(tokens)}.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


def _load(tokens: Path) -> str:
    return f"""
local tokens = {{}}
for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end"""


def rotating_tokens_script(tokens: Path, file_name: str) -> str:
    return _load(tokens) + f"""
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/hls/dir/t/" .. tokens[(n % #tokens) + 1] .. "/{file_name}")
end
"""


def viewers_script(tokens: Path) -> str:
    """Viewer i asks with token i: the playlist, a pause, a segment, a pause, ..."""
    return _load(tokens) + """
local n = 0
request = function()
  n = n + 1
  local viewer = (n % #tokens) + 1
  local object = (math.floor(n / #tokens) % 2 == 0) and "index.m3u8" or "seg1003.ts"
  return wrk.format("GET", "/hls/dir/t/" .. tokens[viewer] .. "/" .. object)
end
delay = function()
  return math.random(500, 1500)  -- a second on average; viewers drift apart as they do
end
"""


def viewers_carried(base: str, stream_tokens: list[str], seconds: int, cap: int,
                    directory: Path) -> list[tuple[int, WrkResult]]:
    """(viewers, result) for each count tried: doubling, then one bisecting step."""
    tried: list[tuple[int, WrkResult]] = []

    def carried(count: int) -> bool:
        try:
            result = wrk(base, connections=count, seconds=seconds,
                         script=viewers_script(token_file(stream_tokens[:count], directory)))
        except RuntimeError as exc:  # nothing answered in time: not carried
            print(f"    {count:5d} viewers: {exc}", flush=True)
            return False
        tried.append((count, result))
        print(f"    {count:5d} viewers: {result}", flush=True)
        return _carried(result)

    count, good = 100, 0
    while count <= cap and carried(count):
        good, count = count, count * 2
    if good and count <= cap:
        carried((good + count) // 2)
    return tried


def _carried(result: WrkResult) -> bool:
    return result.p99_ms < P99_LIMIT_MS and result.non_2xx == 0 and result.socket_errors == 0


def best(tried: list[tuple[int, WrkResult]]) -> int:
    passing = [count for count, result in tried if _carried(result)]
    return max(passing, default=0)


def _ratios(results: dict[str, WrkResult], name: str) -> str:
    kind = name.split()[0]
    requests_per_s = results[name].requests_per_s
    plain = results[f"{kind} (a) nginx from disk"].requests_per_s
    cached = results[f"{kind} (a+) nginx from disk, open file cache"].requests_per_s
    return f"/ (a) {requests_per_s / plain:.2f}  / (a+) {requests_per_s / cached:.2f}"


def main(seconds: int, cap: int) -> None:
    nginx_bin = nginx_binary()
    # In memory where there is a tmpfs, for every system alike: the edge's decision cache
    # is a file per decision, and a busy shared disk made new decisions 5x slower.
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    print(f"bench: files (media, nginx prefixes) under {base or tempfile.gettempdir()}")
    with tempfile.TemporaryDirectory(dir=base) as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's workers run as `nobody` when it is started as root
        media = write_media(tmp / "media")
        catalog = tmp / "streams.toml"
        catalog.write_text(f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\n'
                           f'origin = "file://{media}/"\n')
        env = {"GATEWAY_VAR_DIR": str(tmp / "var"), "GATEWAY_STREAMS": str(catalog),
               "GATEWAY_STORE": f"sqlite:///{tmp}/g.db", "GATEWAY_SECRET": SECRET,
               "GATEWAY_WEBHOOK_SECRET": secrets.token_hex(32),
               "GATEWAY_TRUSTED_PROXIES": "127.0.0.1", "GATEWAY_LOG_LEVEL": "WARNING",
               "GATEWAY_MAX_DEVICES": "0"}
        gateway = ServerProcess(env).start()
        plain_port, edge_port = free_port(), free_port()
        (tmp / "plain").mkdir()
        plain = subprocess.Popen([nginx_bin, "-p", str(tmp / "plain"), "-c",
                                  str(nginx_config(media, plain_port, tmp / "plain")),
                                  "-e", "stderr"], stderr=subprocess.DEVNULL)
        cached_port = free_port()
        (tmp / "plain-cached").mkdir()
        plain_cached = subprocess.Popen(
            [nginx_bin, "-p", str(tmp / "plain-cached"), "-c",
             str(nginx_config(media, cached_port, tmp / "plain-cached", open_file_cache=True)),
             "-e", "stderr"], stderr=subprocess.DEVNULL)
        edge_prefix = tmp / "edge"
        subprocess.run(
            [sys.executable, "-m", "gateway", "nginx-config", "--listen",
             f"127.0.0.1:{edge_port}", "--prefix", str(edge_prefix), "--output",
             str(edge_prefix / "nginx.conf"), "--workers", "1", "--no-access-log",
             "--gateway", gateway.url, *(["--user", "root"] if os.geteuid() == 0 else [])],
            env={**os.environ, **env}, check=True, cwd=ROOT)
        edge = subprocess.Popen([nginx_bin, "-p", str(edge_prefix), "-c", "nginx.conf",
                                 "-e", "logs/error.log", "-g", "daemon off;"])
        try:
            plain_url = f"http://127.0.0.1:{plain_port}"
            cached_url = f"http://127.0.0.1:{cached_port}"
            wait_for(f"{cached_url}/index.m3u8")
            edge_url = f"http://127.0.0.1:{edge_port}"
            wait_for(f"{plain_url}/index.m3u8")
            token_base = asyncio.run(path_token_base(gateway.url, "dir"))
            token_path = token_base.removeprefix(gateway.url)
            wait_for(f"{edge_url}{token_path}/index.m3u8")
            fresh = token_file(minted_tokens(200_000, "dir"), tmp)
            results: dict[str, WrkResult] = {}
            for kind, file_name in (("segment", "seg1003.ts"), ("playlist", "index.m3u8")):
                results[f"{kind} (a) nginx from disk"] = wrk(f"{plain_url}/{file_name}",
                                                             seconds=seconds)
                results[f"{kind} (a+) nginx from disk, open file cache"] = wrk(
                    f"{cached_url}/{file_name}", seconds=seconds)
                results[f"{kind} (b) edge, cached decision"] = wrk(
                    f"{edge_url}{token_path}/{file_name}", seconds=seconds)
                results[f"{kind} (c) edge, new decision each request"] = wrk(
                    edge_url, seconds=seconds,
                    script=rotating_tokens_script(fresh, file_name))
                results[f"{kind} (d) Python gate"] = wrk(f"{token_base}/{file_name}",
                                                         seconds=seconds)
                for name, result in results.items():
                    if name.startswith(kind):
                        print(f"{name:52s} {result}   {_ratios(results, name)}", flush=True)
            viewer_tokens = minted_tokens(cap, "dir")
            print(f"\nviewers (one playlist and one segment every ~2 s each), "
                  f"p99 < {P99_LIMIT_MS:.0f} ms, {seconds} s per step, cap {cap}:")
            print("  (b) edge, cached decisions (each viewer its own token):")
            edge_tried = viewers_carried(edge_url, viewer_tokens, seconds, cap, tmp)
            print("  (d) Python gate:")
            gate_tried = viewers_carried(gateway.url, viewer_tokens, seconds, cap, tmp)
        finally:
            for process in (edge, plain, plain_cached):
                process.terminate()
                process.wait()
            gateway.stop()
    print(f"\nwrk -t1 -c50 -d{seconds}s; segment {SEGMENT_BYTES // 1024} KB, playlist "
          f"{len(PLAYLIST)} B; nginx one worker in each case")
    for name, result in results.items():
        print(f"{name:52s} {result.requests_per_s:9.0f} req/s  {_ratios(results, name)}")
    print(f"viewers at p99 < {P99_LIMIT_MS:.0f} ms: (b) edge {best(edge_tried)}, "
          f"(d) Python gate {best(gate_tried)} (cap {cap})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10,
         int(sys.argv[2]) if len(sys.argv) > 2 else 6400)
