"""A real `python -m gateway serve` process, for tests that need one (kill -9, restarts)."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int | None = None,
                 log_path: Path | None = None, descriptor_limit: int | None = None) -> None:
        self.port = port or free_port()
        # Both soft and hard RLIMIT_NOFILE, so the service cannot raise it.
        self.descriptor_limit = descriptor_limit
        self.env = {**os.environ, **env, "PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20) -> ServerProcess:
        command = [sys.executable, "-m", "gateway", "serve"]
        limit = self.descriptor_limit

        def limit_descriptors() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        if self.log_path is None:
            self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL,
                                            preexec_fn=limit_descriptors)
        else:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                                preexec_fn=limit_descriptors)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)  # polling for readiness, not for a result
        raise RuntimeError("server did not become healthy")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def listen_queue(port: int) -> int:
    """The kernel's queue length of the socket listening on `port` (`ss`' Send-Q)."""
    from tests.conftest import require_tool
    shown = subprocess.run([require_tool("ss"), "-ltnH", f"sport = :{port}"],
                           capture_output=True, text=True, check=True).stdout.split()
    return int(shown[2])  # State Recv-Q Send-Q Local Peer
