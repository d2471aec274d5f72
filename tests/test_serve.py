"""Slow clients cannot starve the service: headers and bodies have deadlines, and open
connections are capped below the descriptor limit, so a flood of clients trickling
their requests still leaves room to answer everyone else (a real `gateway serve`)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.i18n import error_message
from gateway.serve import connection_cap
from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET
from tests.server_process import ServerProcess, listen_queue

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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_a_crowd_of_connections_waits_in_the_kernels_queue_not_dropped(
        served: ServerProcess) -> None:
    """asyncio's accept batch (32) must not set the kernel's queue: at a show's start a
    full queue drops SYNs, and each phone waits a second or more to retry."""
    assert listen_queue(served.port) >= 1024


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/check-access?streamId=d\xc3\xa9mo HTTP/1.1\r\nHost: x\r\n\r\n",  # raw UTF-8
    b"GET /api/streams HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    b"GET /api/streams HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"GET /api/streams HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"POST /api/generate-qris HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["utf8-in-url", "content-length", "header-line", "long-header", "chunk", "method"])
def test_a_request_that_cannot_be_parsed_gets_the_json_error(served: ServerProcess,
                                                             request_bytes: bytes) -> None:
    """aiohttp's own answer is text/plain, names its version and echoes the request."""
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(request_bytes)
        answer = closed_by_server(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:200]
    headers = {name.strip().lower(): value.strip() for name, _, value in
               (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    assert headers[b"content-type"].startswith(b"application/json")
    assert headers[b"server"] == b"stream-paygate"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert json.loads(body) == {"success": False, "code": "http_400",
                                "error": error_message("id", "http_400", {})}
    assert b"d\xc3\xa9mo" not in body and b"X-Long" not in body


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer on a kept-alive connection (its Content-Length says where it
    ends)."""
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def newcomers_are_answered(server: ServerProcess, count: int = 5) -> None:
    """Each new client is answered within a few seconds (urllib's timeout fails it)."""
    for _ in range(count):
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=3) as response:
            assert response.status == 200


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start(tmp_path, GATEWAY_MAX_CONNECTIONS="200")
    try:
        yield server
    finally:
        server.stop()


def test_idle_keep_alive_connections_at_the_cap_make_room(capped: ServerProcess) -> None:
    """200 clients that asked once and stay connected, silent, fill a cap of 200: the
    newcomer takes an idle one's place instead of being turned away."""
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", capped.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
            idle.append(sock)
        newcomers_are_answered(capped)
    finally:
        for sock in idle:
            sock.close()


def test_trickled_console_forms_at_the_cap_make_room(capped: ServerProcess) -> None:
    """200 strangers trickling a sign-in form's body fill a cap of 200: the slowest
    makes room for each newcomer (each is also cut off with a 408 in its time)."""
    trickling: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", capped.port))
            # Answered first, so it is surely among the open connections (a connect
            # only waits in the listen backlog until the service accepts it).
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
            sock.sendall(b"POST /admin/sign-in HTTP/1.1\r\nHost: x\r\nOrigin: http://x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 1000\r\n\r\nname=a")
            trickling.append(sock)
        newcomers_are_answered(capped)
    finally:
        for sock in trickling:
            sock.close()


def test_a_sign_in_form_that_never_ends_is_a_408(quick_timeouts: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", quick_timeouts.port)) as sock:
        sock.sendall(b"POST /admin/sign-in HTTP/1.1\r\nHost: x\r\nOrigin: http://x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\nname=")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_every_request_on_a_kept_alive_connection_has_the_header_deadline(
        quick_timeouts: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", quick_timeouts.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert closed_by_server(sock) == b""
