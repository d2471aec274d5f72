"""A real nginx (Debian's package) running `gateway nginx-config`'s configuration from a
prefix that starts empty, as an unprivileged operator would run it, on a free port."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET, require_tool
from tests.server_process import free_port


def require_nginx() -> str:
    """nginx lives in /usr/sbin, which a non-root PATH often lacks."""
    if shutil.which("nginx") is None and os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    return require_tool("nginx")


class Edge:
    def __init__(self, prefix: Path, env: Mapping[str, str], gateways: Sequence[str]) -> None:
        self.prefix = prefix
        self.env = {**os.environ, **env}
        self.gateways = list(gateways)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.answered: list[list[str]] = []  # per service instance: the paths it answered
        self.cookies_seen: list[str] = []  # the paths that reached a service with cookies

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def generate(self, *extra: str) -> tuple[int, str]:
        command = [sys.executable, "-m", "gateway", "nginx-config",
                   "--listen", f"127.0.0.1:{self.port}", "--prefix", str(self.prefix),
                   "--output", str(self.prefix / "nginx.conf"), "--workers", "1", *extra]
        for gateway in self.gateways:
            command += ["--gateway", gateway]
        if os.geteuid() == 0:  # workers would drop to `nobody`, who cannot read tmp_path
            command += ["--user", "root"]
        process = await asyncio.create_subprocess_exec(
            *command, env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return process.returncode, output.decode()

    async def start(self) -> Edge:
        nginx = require_nginx()
        code, output = await self.generate()
        assert code == 0, output
        # -e: nginx's own start-up messages go under the prefix too, not /var/log.
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.prefix), "-c", "nginx.conf", "-e", "logs/error.log",
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError("nginx did not start listening") from None
                await asyncio.sleep(0.05)  # polling for readiness, not for a result
                continue
            writer.close()
            await writer.wait_closed()
            return self

    def error_log(self) -> str:
        log = self.prefix / "logs" / "error.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # nginx's fast shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def edge_env(var_root: Path, catalog: Path, **overrides: str) -> dict[str, str]:
    return {
        "GATEWAY_VAR_DIR": str(var_root / "var"),
        "GATEWAY_STORE": f"sqlite:///{var_root / 'gateway.db'}",
        "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_STREAMS": str(catalog),
        "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "5",
        "GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
        **overrides,
    }


async def edge_in_front(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]],
                        catalog: Path, instances: int = 1, **overrides: str) -> Edge:
    """That many service instances (real clock, each its own var dir, the public URL
    nginx's) behind one real nginx whose configuration the CLI wrote. The caller stops it.
    `edge.answered` lists the paths each instance answered."""
    require_nginx()
    edge = Edge(tmp_path / "edge", {}, [])
    for number in range(instances):
        env = edge_env(tmp_path / f"instance{number}", catalog,
                       GATEWAY_PUBLIC_URL=edge.url, **overrides)
        app = create_app(Settings.from_env(env))
        app.on_response_prepare.append(_note_answers(edge, number))
        server = await aiohttp_server(app)
        edge.gateways.append(str(server.make_url("")).rstrip("/"))
        edge.env.update(env)
    return await edge.start()


def _note_answers(edge: Edge, instance: int) -> Callable[[web.Request, web.StreamResponse],
                                                          Awaitable[None]]:
    edge.answered.append([])

    async def note(request: web.Request, response: web.StreamResponse) -> None:
        edge.answered[instance].append(request.path)
        if "Cookie" in request.headers:
            edge.cookies_seen.append(request.path)

    return note
