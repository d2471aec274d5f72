"""Keys delivery (issue 25) against today's gate edge, trace-driven, on this machine.

A live stream (a packager thread writes a 2 s segment and a moving 5-segment playlist
into a directory) is watched by N simulated viewers through nginx, each on its own
keep-alive connection: a playlist every 2 s (phases spread over the 2 s), each segment
it has not fetched yet once (three at the live edge when it starts), and, with keys
delivery, the key whenever the playlist names one it has not fetched. The same viewers
then watch through the gate's edge (`gateway nginx-config`, nginx serving the
directory after a cached `/gate/auth` decision), side by side in one run.

(a) `--delivery keys` with the rotation shortened (default 10 s) so several fit in a
    run: the share of all requests that reached the service (measured, and with the key
    requests scaled to the default 120 s rotation), media and key p99 latency, and the
    service's CPU seconds per 1,000 viewers per minute.
(b) the gate edge: the same figures (the service answers /gate/auth subrequests).
(c) the key route alone, open loop at the rate 100,000 viewers make at a 120 s rotation
    (833 req/s, each request a different viewer's token), through nginx, for 60 s:
    p99 (from the moment each request was due) and errors.
(d) the key route's ceiling: wrk, closed loop, 64 connections, each request the next
    viewer's token: what one service process answers at most.

What reached the service is counted by nginx: every request and auth subrequest it
passed upstream is one line of an extra access log (`$upstream_addr` not empty).
Tokens are minted as the service mints them, and devices are not counted
(GATEWAY_MAX_DEVICES=0, as in bench/edge.py): they exist in no store.

    .venv/bin/python -m bench.keys_delivery [viewers] [seconds] [rotation-s] [key-rate]

BENCH_ONLY=keys skips (b); BENCH_UPSTREAM_KEEPALIVE=N replaces nginx's pool of idle
connections to the service (the generated configuration's, 512 with keys delivery).
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.edge import SECRET, minted_tokens
from bench.gate_vs_nginx import nginx_binary, wait_for
from bench.tools import ROOT, ServerProcess, free_port, wrk
from gateway.settings import PACKAGE_DIR

SEGMENT_S = 2.0
WINDOW_SEGMENTS = 5
DEFAULT_ROTATION_S = 120
DEMO = PACKAGE_DIR / "demo" / "live"
_KEY_URI = re.compile(r'URI="([^"]+)"')


# --- the live origin ---------------------------------------------------------------

class Packager(threading.Thread):
    """Writes segment n as `n.ts` (the demo's test pattern, round and round) every 2 s,
    and the live playlist naming the last five, replaced atomically as a packager does."""

    def __init__(self, directory: Path) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.sources = [(DEMO / f"seg{n}.ts").read_bytes() for n in range(4)]
        self.started_s = time.time()
        self.first = int(self.started_s // SEGMENT_S)
        self.stopped = threading.Event()
        for number in range(self.first - WINDOW_SEGMENTS, self.first):
            self._segment(number)
        self._playlist(self.first - 1)

    def run(self) -> None:
        number = self.first
        while not self.stopped.wait(max(0.0, (number + 1) * SEGMENT_S - time.time())):
            self._segment(number)
            self._playlist(number)
            (self.directory / f"{number - 4 * WINDOW_SEGMENTS}.ts").unlink(missing_ok=True)
            number += 1

    def _segment(self, number: int) -> None:
        (self.directory / f"{number}.ts").write_bytes(self.sources[number % 4])

    def _playlist(self, last: int) -> None:
        first = last - WINDOW_SEGMENTS + 1
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(SEGMENT_S)}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}",
                 f"#EXT-X-DISCONTINUITY-SEQUENCE:{(first + 3) // 4}"]
        for number in range(first, last + 1):
            if number % 4 == 0:
                lines.append("#EXT-X-DISCONTINUITY")  # the test pattern starts over
            lines += [f"#EXTINF:{SEGMENT_S:.3f},", f"{number}.ts"]
        temporary = self.directory / "index.m3u8.tmp"
        temporary.write_text("\n".join(lines) + "\n")
        temporary.replace(self.directory / "index.m3u8")


# --- a lean HTTP/1.1 client: one keep-alive connection per viewer --------------------

class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, cookie: str) -> tuple[int, bytes]:
        for attempt in range(2):  # nginx may close an idle keep-alive connection
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1",
                                                                         self.port)
            assert self.reader is not None
            self.writer.write(f"GET {path} HTTP/1.1\r\nHost: tonton.example\r\n"
                              f"Cookie: {cookie}\r\n\r\n".encode())
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            status = int(head[9:12])
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if length is not None:
                body = await self.reader.readexactly(int(length.group(1)))
            else:
                body = b""
                while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                    body += await self.reader.readexactly(size)
                    await self.reader.readline()
                await self.reader.readline()
            if re.search(rb"\r\nconnection: *close", head, re.I):
                self.close()  # nginx's keepalive_requests: the next one on a new one
            return status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Figures:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {
        "playlist": [], "segment": [], "key": []})
    errors: Counter[str] = field(default_factory=Counter)

    def requests(self) -> int:
        return sum(len(times) for times in self.latencies_ms.values())


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


class Viewer:
    def __init__(self, port: int, playlist: str, token: str, cookie_form: str) -> None:
        self.connection = Connection(port)
        self.playlist = playlist
        self.cookie = f"viewer=v{secrets.token_hex(8)}; {cookie_form}={token}"
        self.segments: set[str] = set()
        self.keys: set[str] = set()

    async def watch(self, figures: Figures, start_s: float, until_s: float,
                    measure_from_s: float) -> None:
        await asyncio.sleep(max(0.0, start_s - time.monotonic()))
        fresh = True
        due_s = start_s
        while due_s < until_s:
            await self._step(figures, fresh,
                             measure=measure_from_s <= time.monotonic() < until_s)
            fresh = False
            due_s += SEGMENT_S
            await asyncio.sleep(max(0.0, due_s - time.monotonic()))
        self.connection.close()

    async def _step(self, figures: Figures, fresh: bool, measure: bool) -> None:
        status, body = await self._get(figures, "playlist", self.playlist, measure)
        if status != 200:
            return
        lines = body.decode().splitlines()
        uris = [line for line in lines if line and not line.startswith("#")]
        base = self.playlist.rsplit("/", 1)[0] + "/"
        wanted = uris[-3:] if fresh else [uri for uri in uris if uri not in self.segments]
        self.segments = set(uris)
        for line in lines:  # each new key the playlist names, before its segments
            if line.startswith("#EXT-X-KEY") and (found := _KEY_URI.search(line)):
                key_uri = found.group(1)
                if key_uri not in self.keys:
                    self.keys.add(key_uri)
                    await self._get(figures, "key", key_uri, measure)
        for uri in wanted:
            await self._get(figures, "segment", uri if uri.startswith("/") else base + uri,
                            measure)

    async def _get(self, figures: Figures, kind: str, path: str, measure: bool
                   ) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            status, body = await self.connection.get(path, self.cookie)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            figures.errors[f"{kind}: {type(exc).__name__}"] += 1
            self.connection.close()
            return 0, b""
        if measure:
            figures.latencies_ms[kind].append((time.perf_counter() - started) * 1000)
            if status != 200:
                figures.errors[f"{kind}: {status}"] += 1
        return status, body


async def watch_all(port: int, playlist: str, tokens: list[str], cookie_form: str,
                    seconds: int) -> Figures:
    figures = Figures()
    now = time.monotonic()
    warm_up_s = 2 * SEGMENT_S + 4  # everyone started, and the first keys made
    viewers = [Viewer(port, playlist, token, cookie_form) for token in tokens]
    await asyncio.gather(*(viewer.watch(figures, now + SEGMENT_S * n / len(viewers),
                                        now + warm_up_s + seconds, now + warm_up_s)
                           for n, viewer in enumerate(viewers)))
    return figures


# --- the key route alone, open loop ---------------------------------------------------

async def key_route(port: int, key_path: str, tokens: list[str], rate: float,
                    seconds: int) -> tuple[list[float], Counter[str]]:
    """Requests due at `rate` a second, each with the next viewer's token, sent on any
    idle connection (a new one if none is): latency counted from when it was due."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    idle: list[Connection] = []
    start = time.monotonic() + 0.5
    total = int(rate * seconds)

    async def one(number: int) -> None:
        due = start + number / rate
        connection = idle.pop() if idle else Connection(port)
        try:
            status, body = await connection.get(key_path,
                                                f"gate={tokens[number % len(tokens)]}")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            connection.close()
            return
        latencies.append((time.monotonic() - due) * 1000)
        if status != 200 or len(body) != 16:
            errors[str(status)] += 1
        idle.append(connection)

    pending: set[asyncio.Task[None]] = set()
    for number in range(total):
        await asyncio.sleep(max(0.0, start + number / rate - time.monotonic()))
        task = asyncio.create_task(one(number))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    for connection in idle:
        connection.close()
    return latencies, errors


# --- the systems --------------------------------------------------------------------

def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (the
    whole machine's): a service falling behind a burst of new connections."""
    names, values = [line.split() for line in Path("/proc/net/netstat").read_text()
                     .splitlines() if line.startswith("TcpExt:")][:2]
    return int(values[names.index("ListenOverflows")])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class System:
    """The service and an nginx in front of it, as `gateway nginx-config` writes it,
    with one more access log: the requests nginx passed to the service."""

    def __init__(self, tmp: Path, catalog: Path, delivery: str, rotation_s: int) -> None:
        self.name = delivery
        self.prefix = tmp / f"edge-{delivery}"
        env = {"GATEWAY_VAR_DIR": str(tmp / f"var-{delivery}"),
               "GATEWAY_STREAMS": str(catalog),
               "GATEWAY_STORE": f"sqlite:///{tmp}/{delivery}.db", "GATEWAY_SECRET": SECRET,
               "GATEWAY_WEBHOOK_SECRET": secrets.token_hex(32),
               "GATEWAY_TRUSTED_PROXIES": "127.0.0.1", "GATEWAY_LOG_LEVEL": "WARNING",
               "GATEWAY_MAX_DEVICES": "0", "GATEWAY_DELIVERY": delivery,
               "GATEWAY_KEY_ROTATION_SECONDS": str(rotation_s),
               "GATEWAY_STREAM_CHECK_INTERVAL_SECONDS": "300"}
        self.service = ServerProcess(env).start()
        self.port = free_port()
        subprocess.run(
            [sys.executable, "-m", "gateway", "nginx-config", "--listen",
             f"127.0.0.1:{self.port}", "--prefix", str(self.prefix), "--output",
             str(self.prefix / "nginx.conf"), "--workers", "1", "--no-access-log",
             "--gateway", self.service.url, *(["--user", "root"] if os.geteuid() == 0 else [])],
            env={**os.environ, **env}, check=True, cwd=ROOT)
        self.passed_log = self.prefix / "logs" / "passed.log"
        config = (self.prefix / "nginx.conf").read_text()
        if keepalive := os.environ.get("BENCH_UPSTREAM_KEEPALIVE"):  # an experiment's
            config = re.sub(r"(upstream gateway \{[^}]*keepalive )\d+;",
                            rf"\g<1>{keepalive};", config)
        config = config.replace(
            "    access_log off;",
            "    log_format passed '$upstream_addr';\n    log_subrequest on;\n"
            f'    access_log "{self.passed_log}" passed if=$upstream_addr;')
        (self.prefix / "nginx.conf").write_text(config)
        self.nginx = subprocess.Popen([nginx_binary(), "-p", str(self.prefix), "-c",
                                       "nginx.conf", "-e", "logs/error.log", "-g",
                                       "daemon off;"])
        wait_for(f"http://127.0.0.1:{self.port}/healthz")

    def passed(self) -> int:
        """Requests (and auth subrequests) nginx has passed to the service so far."""
        if not self.passed_log.exists():
            return 0
        with self.passed_log.open("rb") as log:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))

    def cpu_s(self) -> float:
        assert self.service.process is not None
        return cpu_seconds(self.service.process.pid)

    def stop(self) -> None:
        self.nginx.terminate()
        self.nginx.wait()
        self.service.stop()


@dataclass
class Run:
    figures: Figures
    passed: int
    cpu_s: float
    seconds: float
    client_cpu_s: float
    listen_overflows: int


def run_viewers(system: System, playlist: str, tokens: list[str], cookie_form: str,
                seconds: int) -> Run:
    async def measured() -> Run:
        # Counted over the measured stretch only: from the end of the warm-up.
        warm_up_s = 2 * SEGMENT_S + 4
        watching = asyncio.ensure_future(watch_all(system.port, playlist, tokens,
                                                   cookie_form, seconds))
        await asyncio.sleep(warm_up_s)
        passed, cpu_s = system.passed(), system.cpu_s()
        client_s, overflows = time.process_time(), listen_overflows()
        await asyncio.sleep(seconds)
        run = Run(Figures(), system.passed() - passed, system.cpu_s() - cpu_s, seconds,
                  time.process_time() - client_s, listen_overflows() - overflows)
        run.figures = await watching
        return run

    return asyncio.run(measured())


def report(name: str, viewers: int, run: Run, rotation_s: int | None) -> None:
    latencies = run.figures.latencies_ms
    total = run.figures.requests()
    keys = len(latencies["key"])
    media = latencies["playlist"] + latencies["segment"]
    print(f"\n{name}: {viewers} viewers, {run.seconds:.0f} s measured, {total} requests "
          f"({len(latencies['playlist'])} playlists, {len(latencies['segment'])} segments, "
          f"{keys} keys), errors {dict(run.figures.errors) or 0}")
    print(f"  reached the service: {run.passed} = {100 * run.passed / total:.2f}% of requests")
    if rotation_s is not None:
        # Every key request reaches the service; at 120 s a viewer asks 120/rotation
        # times fewer. Media misses do not depend on the rotation.
        scaled_keys = keys * rotation_s / DEFAULT_ROTATION_S
        scaled = run.passed - keys + scaled_keys
        print(f"  scaled to a {DEFAULT_ROTATION_S} s rotation: {scaled:.0f} of "
              f"{total - keys + scaled_keys:.0f} = "
              f"{100 * scaled / (total - keys + scaled_keys):.2f}%")
    print(f"  p99: media {p99(media):.1f} ms (playlists {p99(latencies['playlist']):.1f}, "
          f"segments {p99(latencies['segment']):.1f})"
          + (f", keys {p99(latencies['key']):.1f} ms" if keys else ""))
    print(f"  this client's CPU: {run.client_cpu_s / run.seconds:.0%} of a core; listen "
          f"queue overflows on the machine: {run.listen_overflows}")
    per_k_min = run.cpu_s / (viewers / 1000) / (run.seconds / 60)
    print(f"  service CPU: {run.cpu_s:.1f} s = {per_k_min:.2f} CPU-s per 1,000 viewers "
          f"per minute")
    if rotation_s is not None and keys:
        # Nearly all of it is key requests: at 120 s there are that many times fewer.
        at_default = per_k_min * (run.passed - keys + scaled_keys) / run.passed
        print(f"  ... at a {DEFAULT_ROTATION_S} s rotation, in proportion to the requests "
              f"that reach it: ~{at_default:.2f} CPU-s per 1,000 viewers per minute")


def main(viewers: int, seconds: int, rotation_s: int, key_rate: float) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        sys.exit("bench: nginx is needed")
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        live = tmp / "live"
        live.mkdir()
        packager = Packager(live)
        packager.start()
        catalog = tmp / "streams.toml"
        catalog.write_text(f'[[stream]]\nid = "live"\ntitle = "Live"\nprice = 1000\n'
                           f'origin = "file://{live}/"\n')
        tokens = minted_tokens(max(viewers, 100_000), "live")
        print(f"bench: {viewers} viewers for {seconds} s each way; keys rotate every "
              f"{rotation_s} s; files under {base or tempfile.gettempdir()}", flush=True)
        keys = System(tmp, catalog, "keys", rotation_s)
        try:
            keys_run = run_viewers(keys, "/media/live/index.m3u8", tokens[:viewers],
                                   "gate", seconds)
            report("(a) keys delivery through nginx", viewers, keys_run, rotation_s)
            key_path = asyncio.run(current_key_path(keys.port))
            latencies, errors = asyncio.run(key_route(keys.port, key_path, tokens,
                                                      key_rate, 60))
            report_key_route(key_rate, len(tokens), latencies, errors)
            token_file = tmp / "tokens.txt"
            token_file.write_text("\n".join(tokens) + "\n")
            ceiling = wrk(f"http://127.0.0.1:{keys.port}", connections=64, seconds=15,
                          script=keys_script(token_file, key_path))
            print(f"(d) the key route's ceiling (wrk -c64, closed loop, each request the "
                  f"next viewer's token): {ceiling}", flush=True)
        finally:
            keys.stop()
        if os.environ.get("BENCH_ONLY") == "keys":
            packager.stopped.set()
            return
        gate = System(tmp, catalog, "gate", rotation_s)
        try:
            gate_run = run_viewers(gate, "/hls/live/index.m3u8", tokens[:viewers], "gate",
                                   seconds)
            report("(b) the gate's edge through nginx", viewers, gate_run, None)
        finally:
            gate.stop()
        packager.stopped.set()


def report_key_route(key_rate: float, viewers: int, latencies: list[float],
                     errors: Counter[str]) -> None:
    print(f"\n(c) the key route alone: {key_rate:.0f} req/s for 60 s through nginx, "
          f"{viewers} viewers' tokens in turn: {len(latencies)} answered, "
          f"p50 {sorted(latencies)[len(latencies) // 2]:.1f} ms, p99 {p99(latencies):.1f} ms, "
          f"errors {dict(errors) or 0}", flush=True)


def keys_script(tokens: Path, key_path: str) -> str:
    return f"""
local tokens = {{}}
for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "{key_path}", {{["Cookie"] = "gate=" .. tokens[(n % #tokens) + 1]}})
end
"""


async def current_key_path(port: int) -> str:
    _, body = await Connection(port).get("/media/live/index.m3u8", "")
    found = _KEY_URI.search(body.decode())
    assert found is not None, body
    return found.group(1)


if __name__ == "__main__":
    arguments = [int(value) for value in sys.argv[1:]]
    main(arguments[0] if arguments else 5000, arguments[1] if len(arguments) > 1 else 60,
         arguments[2] if len(arguments) > 2 else 10,
         arguments[3] if len(arguments) > 3 else 833)
