"""Instructions per request, counted by valgrind's callgrind: the bare handler, the same
handler inside a gateway process, the gate, and the bare handler sent the gate's own
URL, on a cached playlist and segment.

    .venv/bin/python -m bench.gate_instructions [requests]   # default 4000, ~6 minutes

wrk's req/s on a 2-core VM moves by several percent between runs; an instruction count
varies far less (the same code and input give the same count whatever else the
machine does, to within ~1%: three runs of the gate gave 255,500-259,900 per
playlist), so a change worth 2% of a request shows. Each server runs under
callgrind with instrumentation off; after a warm-up, it is switched on for exactly
`requests` GETs sent over 50 keep-alive connections (as wrk -c50 would), then off, and
the count is divided by the requests. Background work in the window (the gateway's
sweeper, say) is counted too: it is part of the price. Instructions are not time (cache
misses, the kernel's send are not in them), but the ratios follow wrk's: the gate's
0.85 of the bare handler on playlists by instructions was 0.83-0.86 by req/s.

The same setup as bench/gate_vs_nginx.py: the path-token form, from a directory origin and
from an HTTP one (an nginx upstream, itself outside valgrind), in one gateway process;
and the cookie form (the watch page's player) from the directory origin.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gate_vs_nginx import (
    AT_GATE_URL,
    IN_GATEWAY,
    OBJECTS,
    gate_cookie_header,
    nginx_binary,
    nginx_config,
    path_token_base,
    wait_for,
    write_media,
)
from bench.tools import ROOT, free_port

CONNECTIONS = 50
GATE = "gate"
GATE_COOKIE = "gate, directory origin, cookie"
WARM_UP_REQUESTS = 300
START_S = 180  # everything runs under valgrind: slow to start


async def _get_over(url: str, per_connection: int,
                    headers: tuple[tuple[str, str], ...] = ()) -> dict[int, int]:
    """`per_connection` GETs of `url` on each of CONNECTIONS keep-alive connections, read
    whole; the statuses seen. Raw HTTP/1.1, so the client costs the server nothing extra."""
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = port_path.split("/", 1)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    statuses: dict[int, int] = {}

    async def one_connection(count: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(one_connection(per_connection) for _ in range(CONNECTIONS)))
    return statuses


def _callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


def instructions_per_request(pid: int, url: str, requests: int, out: Path,
                             headers: tuple[tuple[str, str], ...] = ()) -> float:
    per_connection = requests // CONNECTIONS
    sent = per_connection * CONNECTIONS
    asyncio.run(_get_over(url, WARM_UP_REQUESTS // CONNECTIONS, headers))
    _callgrind(pid, "-i", "on")
    statuses = asyncio.run(_get_over(url, per_connection, headers))
    _callgrind(pid, "-i", "off")
    before = set(out.parent.glob(out.name + "*"))
    _callgrind(pid, "-d")
    assert statuses == {200: sent}, statuses
    for _ in range(300):
        dumps = set(out.parent.glob(out.name + "*")) - before
        # Written when the process next runs; complete once its totals line is there.
        totals = [int(line.split()[1]) for dump in dumps
                  for line in dump.read_text().splitlines() if line.startswith("totals:")]
        if totals:
            break
        time.sleep(0.1)  # polling for the dump
    else:
        raise RuntimeError("callgrind wrote no dump")
    for dump in dumps:
        dump.unlink()
    return max(totals) / sent


def main(requests: int) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench: valgrind is needed (apt-get install valgrind)")
    results: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = write_media(tmp / "media")
        # The HTTP origin's upstream, outside valgrind: only the gateway is counted.
        nginx_port = free_port()
        nginx = subprocess.Popen([nginx_binary(), "-c", str(nginx_config(root, nginx_port, tmp)),
                                  "-p", tmp_name], stderr=subprocess.DEVNULL)
        catalog = tmp / "streams.toml"
        catalog.write_text(f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\n'
                           f'origin = "file://{root}/"\n'
                           f'[[stream]]\nid = "http"\ntitle = "h"\nprice = 1000\n'
                           f'origin = "http://127.0.0.1:{nginx_port}/"\n')
        python = sys.executable
        systems = {
            "bare": [python, str(ROOT / "bench" / "bare_files.py"), "{port}", str(root)],
            IN_GATEWAY: [python, "-m", "bench.bare_in_gateway"],
            GATE: [python, "-m", "gateway", "serve"],  # both origins, one process
            # After the gate: sent the very URL the gate was (bench/gate_vs_nginx.py's (e)).
            AT_GATE_URL: [python, str(ROOT / "bench" / "bare_files.py"), "{port}", str(root)],
        }
        gate_path = ""
        rows: list[str] = []
        try:
            for name, command in systems.items():
                gate_path = _count(name, command, tmp, root, catalog, requests, gate_path,
                                   rows, results)
        finally:
            nginx.terminate()
            nginx.wait()
    print(f"\ncallgrind, {requests} requests over {CONNECTIONS} connections each\n")
    print("| object | system | instructions per request | bare / system "
          "| bare at the gate's URL / system |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind in OBJECTS:
        for row in rows:
            print(f"| {kind} | {row} | {results[kind, row]:,.0f} | "
                  f"{results[kind, 'bare'] / results[kind, row]:.3f} | "
                  f"{results[kind, AT_GATE_URL] / results[kind, row]:.3f} |")


def _count(name: str, command: list[str], tmp: Path, root: Path, catalog: Path,
           requests: int, gate_path: str, rows: list[str],
           results: dict[tuple[str, str], float]) -> str:
    """Starts `command` under callgrind and counts each of its rows into `results`; the
    gate's path-token path (for the bare handler after it)."""
    port = free_port()
    out = tmp / f"callgrind-{port}.out"
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp / str(port)),
           "GATEWAY_STREAMS": str(catalog), "PORT": str(port),
           "GATEWAY_STORE": f"sqlite:///{tmp}/{port}.db", "BENCH_BARE_DIR": str(root)}
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={out}",
         *(part.replace("{port}", str(port)) for part in command)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        bases = {name: base}
        headers: dict[str, tuple[tuple[str, str], ...]] = {}
        if name == GATE:
            wait_for(f"{base}/readyz", START_S)
            bases = {f"gate, {origin} origin": asyncio.run(path_token_base(base, stream))
                     for stream, origin in (("dir", "directory"), ("http", "HTTP"))}
            gate_path = bases["gate, directory origin"].removeprefix(base)
            # The watch page's player: the token in the gate cookie, not the path.
            bases[GATE_COOKIE] = f"{base}/hls/dir"
            headers[GATE_COOKIE] = gate_cookie_header(bases["gate, directory origin"])
        elif name == AT_GATE_URL:
            bases = {name: base + gate_path}
        elif name == IN_GATEWAY:
            bases = {name: base + "/bare"}
        for row, row_base in bases.items():
            if row not in headers:
                wait_for(f"{row_base}/{OBJECTS['playlist']}", START_S)
            rows.append(row)
            for kind, file in OBJECTS.items():
                results[kind, row] = instructions_per_request(
                    server.pid, f"{row_base}/{file}", requests, out, headers.get(row, ()))
                print(f"{kind} {row}: {results[kind, row]:,.0f}", flush=True)
    finally:
        server.terminate()
        server.wait()
    return gate_path


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
