"""Instructions per request, counted by valgrind's callgrind: the bare handler, the same
handler inside a gateway process, the gate, and the bare handler sent the gate's own
URL, on a cached playlist and segment.

    .venv/bin/python -m bench.gate_instructions [requests]   # default 4000, ~5 minutes

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

The same setup as bench/gate_vs_nginx.py: a directory origin, the path-token form.
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
    path_token_base,
    wait_for,
    write_media,
)
from bench.tools import ROOT, free_port

CONNECTIONS = 50
WARM_UP_REQUESTS = 300
START_S = 180  # everything runs under valgrind: slow to start


async def _get_over(url: str, per_connection: int) -> dict[int, int]:
    """`per_connection` GETs of `url` on each of CONNECTIONS keep-alive connections, read
    whole; the statuses seen. Raw HTTP/1.1, so the client costs the server nothing extra."""
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = port_path.split("/", 1)
    request = f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
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


def instructions_per_request(pid: int, url: str, requests: int, out: Path) -> float:
    per_connection = requests // CONNECTIONS
    sent = per_connection * CONNECTIONS
    asyncio.run(_get_over(url, WARM_UP_REQUESTS // CONNECTIONS))
    _callgrind(pid, "-i", "on")
    statuses = asyncio.run(_get_over(url, per_connection))
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
        catalog = tmp / "streams.toml"
        catalog.write_text(f'[[stream]]\nid = "dir"\ntitle = "d"\nprice = 1000\n'
                           f'origin = "file://{root}/"\n')
        python = sys.executable
        systems = {
            "bare": [python, str(ROOT / "bench" / "bare_files.py"), "{port}", str(root)],
            IN_GATEWAY: [python, "-m", "bench.bare_in_gateway"],
            "gate, directory origin": [python, "-m", "gateway", "serve"],
            # After the gate: sent the very URL the gate was (bench/gate_vs_nginx.py's (e)).
            AT_GATE_URL: [python, str(ROOT / "bench" / "bare_files.py"), "{port}", str(root)],
        }
        gate_path = ""
        for name, command in systems.items():
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
                if name.startswith("gate"):
                    wait_for(f"{base}/readyz", START_S)
                    base = asyncio.run(path_token_base(base, "dir"))
                    gate_path = base.removeprefix(f"http://127.0.0.1:{port}")
                elif name == AT_GATE_URL:
                    base += gate_path
                elif name == IN_GATEWAY:
                    base += "/bare"
                wait_for(f"{base}/{OBJECTS['playlist']}", START_S)
                for kind, file in OBJECTS.items():
                    results[kind, name] = instructions_per_request(
                        server.pid, f"{base}/{file}", requests, out)
                    print(f"{kind} {name}: {results[kind, name]:,.0f}", flush=True)
            finally:
                server.terminate()
                server.wait()
    print(f"\ncallgrind, {requests} requests over {CONNECTIONS} connections each\n")
    print("| object | system | instructions per request | bare / system "
          "| bare at the gate's URL / system |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind in OBJECTS:
        for name in systems:
            print(f"| {kind} | {name} | {results[kind, name]:,.0f} | "
                  f"{results[kind, 'bare'] / results[kind, name]:.3f} | "
                  f"{results[kind, AT_GATE_URL] / results[kind, name]:.3f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
