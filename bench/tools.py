"""Shared bench plumbing: servers in subprocesses, wrk runs, figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_process import ServerProcess, free_port

__all__ = ["ROOT", "ServerProcess", "WrkResult", "free_port", "hello_server", "wrk"]


@dataclass
class WrkResult:
    requests_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int
    socket_errors: int = 0  # connect, read, write errors and timeouts (wrk: 2 s)

    def __str__(self) -> str:
        return (f"{self.requests_per_s:10.0f} req/s {self.mb_per_s:8.1f} MB/s"
                f"  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms"
                + (f"  non-2xx {self.non_2xx}" if self.non_2xx else "")
                + (f"  socket errors {self.socket_errors}" if self.socket_errors else ""))


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"wrk latency {text!r} not understood")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _mb(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)([KMG]?B)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[unit] * 1.048576


def wrk(url: str, *, connections: int = 50, seconds: int = 10, threads: int = 1,
        headers: dict[str, str] | None = None, script: str | None = None,
        cpus: str | None = None) -> WrkResult:
    """`cpus`: run wrk pinned there (taskset), away from the server's core."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is needed (apt-get install wrk)")
    command = (["taskset", "-c", cpus] if cpus else []) + [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            command += ["-s", lua.name]
        output = subprocess.run(command + [url], capture_output=True, text=True,
                                check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                       r"timeout (\d+)", output)
    if re.search(r"^\s+99%\s+\S+\s*$", output, re.M) is None:
        raise RuntimeError(f"wrk gave no latency figures:\n{output}")
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        mb_per_s=_mb(re.search(r"Transfer/sec:\s+(\S+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(re.search(r"^\s+50%\s+(\S+)\s*$", output, re.M).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"^\s+99%\s+(\S+)\s*$", output, re.M).group(1)),  # type: ignore[union-attr]
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        requests=int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


class hello_server:
    def __enter__(self) -> str:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "hello.py"),
                                         str(self.port)])
        url = f"http://127.0.0.1:{self.port}/"
        for _ in range(200):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                return url
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hello server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()
