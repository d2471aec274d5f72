"""Slow clients cannot starve the service: headers and bodies have deadlines, and open
connections are capped below the descriptor limit, so a flood of clients trickling
their requests still leaves room to answer everyone else (a real `gateway serve`)."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.serve import connection_cap
from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow


def start(tmp_path: Path, descriptor_limit: int | None = None, **env: str) -> ServerProcess:
    return ServerProcess({
        "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        "GATEWAY_STORE": f"sqlite:///{tmp_path / 'g.db'}", "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET, "GATEWAY_API_KEY": API_KEY, **env,
    }, log_path=tmp_path / "gateway.log", descriptor_limit=descriptor_limit).start()


@pytest.fixture
def quick_timeouts(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start(tmp_path, GATEWAY_HEADER_TIMEOUT_SECONDS="1",
                   GATEWAY_BODY_TIMEOUT_SECONDS="1")
    try:
        yield server
    finally:
        server.stop()


def closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (10 s at most)."""
    sock.settimeout(10)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_headers_that_never_end_are_cut_off(quick_timeouts: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", quick_timeouts.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert closed_by_server(sock) == b""


def test_a_body_that_never_ends_is_a_408(quick_timeouts: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", quick_timeouts.port)) as sock:
        sock.sendall(b"POST /api/generate-qris HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"str")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"code": "request_timeout"' in answer


def test_a_client_hanging_up_mid_body_is_one_line_not_a_traceback(
        quick_timeouts: ServerProcess, tmp_path: Path) -> None:
    with socket.create_connection(("127.0.0.1", quick_timeouts.port)) as sock:
        sock.sendall(b"POST /api/generate-qris HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"stre")
    with urllib.request.urlopen(f"{quick_timeouts.url}/healthz", timeout=5):
        pass
    quick_timeouts.stop()  # the log is complete once the process has ended
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log
    assert '"event":"client_gone_mid_request"' in log


def test_a_flood_of_slow_clients_leaves_room_for_others(tmp_path: Path) -> None:
    """Twice as many trickling clients as the service has descriptors."""
    server = start(tmp_path, descriptor_limit=256)
    flood: list[socket.socket] = []
    try:
        for _ in range(512):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            flood.append(sock)
        for _ in range(5):
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
                assert response.status == 200
    finally:
        for sock in flood:
            sock.close()
        server.stop()
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log and "Too many open files" not in log


def test_the_connection_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap(0, 1024) == 1024 - 192
    assert connection_cap(5000, 1024) == 1024 - 192  # never above, whatever is asked
    assert connection_cap(100, 1024) == 100
    assert connection_cap(0, 65536) == 65536 - 6553
