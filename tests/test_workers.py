"""GATEWAY_WORKERS: several processes on one port, under `gateway serve`'s supervisor
(real processes: the supervisor, its workers, kill -9)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET, require_redis
from tests.server_process import ServerProcess, listen_queue

pytestmark = pytest.mark.slow


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, object] = json.load(response)["data"]
        return data


def worker_pids(log_path: Path) -> dict[int, int]:
    """Each worker index's pid now, as the supervisor logged them."""
    pids: dict[int, int] = {}
    for line in log_path.read_text().splitlines():
        if '"event":"worker_started"' in line:
            event = json.loads(line)
            pids[event["worker"]] = event["pid"]
    return pids


@pytest.fixture(params=["sqlite", "redis"])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """`gateway serve` with GATEWAY_WORKERS=2, on each store."""
    if request.param == "sqlite":
        store = {"GATEWAY_STORE": f"sqlite:///{tmp_path / 'g.db'}"}
    else:
        prefix = f"test-workers-{uuid.uuid4().hex[:12]}:"
        store = {"GATEWAY_STORE": require_redis(), "GATEWAY_REDIS_KEY_PREFIX": prefix}
    server = ServerProcess({
        "GATEWAY_VAR_DIR": str(tmp_path / "var"), **store, "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET, "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_WORKERS": "2",
    }, log_path=tmp_path / "gateway.log").start()
    try:
        yield server
    finally:
        server.stop()
        if request.param == "redis":
            _forget_keys(store["GATEWAY_STORE"], store["GATEWAY_REDIS_KEY_PREFIX"])


def _forget_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_the_shared_port_keeps_its_kernel_queue_once_workers_serve(
        two_workers: ServerProcess) -> None:
    """Each worker's asyncio listen() must not shrink the supervisor's queue."""
    assert listen_queue(two_workers.port) >= 1024


def test_two_workers_share_the_port(two_workers: ServerProcess) -> None:
    answered: Counter[object] = Counter()
    deadline = time.monotonic() + 20
    # The kernel gives each new connection to whichever worker accepts first.
    while len(answered) < 2:
        assert time.monotonic() < deadline, answered
        answered[get_json(f"{two_workers.url}/healthz")["worker"]] += 1
    assert set(answered) == {0, 1}


def test_a_worker_killed_hard_is_replaced_and_nobody_notices(
        two_workers: ServerProcess, tmp_path: Path) -> None:
    log_path = tmp_path / "gateway.log"
    before = worker_pids(log_path)
    # A payment worker 1 has just answered 200 for is kept, whatever happens to it next.
    with on_worker(two_workers.port, 1) as connection:
        qr, cookie = buy(connection)
        assert notify_paid(connection, qr)["applied"] is True
    os.kill(before[1], signal.SIGKILL)
    # Every request in the meantime is answered: the listening socket is the
    # supervisor's, and the other worker accepts on it.
    deadline = time.monotonic() + 20
    while worker_pids(log_path).get(1) == before[1]:
        assert time.monotonic() < deadline, "worker 1 was not started again"
        assert get_json(f"{two_workers.url}/healthz")["status"] == "ok"
    replacement = worker_pids(log_path)[1]
    assert replacement != before[1] and worker_pids(log_path)[0] == before[0]
    answered = set()
    while answered != {0, 1}:
        assert time.monotonic() < deadline, answered
        answered.add(get_json(f"{two_workers.url}/healthz")["worker"])
    with on_worker(two_workers.port, 0) as connection:
        # The seed's status poll (GET on the callback's path, as the SPEC names it).
        _, body = connection.request(
            "GET", f"/api/payment-callback?sessionId={qr['sessionId']}",
            headers={"Cookie": cookie})
        assert json.loads(body)["data"]["status"] == "paid"
    log = log_path.read_text()
    assert '"event":"worker_exited"' in log and "Traceback" not in log


def test_stopping_the_supervisor_stops_every_worker(two_workers: ServerProcess,
                                                     tmp_path: Path) -> None:
    pids = worker_pids(tmp_path / "gateway.log")
    two_workers.stop()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


class Connection:
    """One keep-alive connection, so we know which worker answers it (its /healthz)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.worker = json.loads(self._answer()[1])["data"]["worker"]

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _answer(self) -> tuple[bytes, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]
        return head, rest[:length]

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[bytes, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
                 f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return self._answer()

    def websocket(self, path: str, cookie: str) -> None:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          f"Cookie: {cookie}\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def message(self) -> dict[str, object]:
        """The next text frame (the server's are unmasked and, here, short)."""
        while True:
            while len(self.buffer) < 2:
                self.buffer += self.sock.recv(65536)
            length, start = self.buffer[1] & 0x7F, 2
            if length == 126:
                while len(self.buffer) < 4:
                    self.buffer += self.sock.recv(65536)
                length, start = int.from_bytes(self.buffer[2:4], "big"), 4
            while len(self.buffer) < start + length:
                self.buffer += self.sock.recv(65536)
            opcode = self.buffer[0] & 0x0F
            payload, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
            if opcode == 1:
                message: dict[str, object] = json.loads(payload)
                return message


def on_worker(port: int, worker: int) -> Connection:
    deadline = time.monotonic() + 20
    while True:
        connection = Connection(port)
        if connection.worker == worker:
            return connection
        connection.sock.close()
        assert time.monotonic() < deadline, f"no connection reached worker {worker}"


def buy(connection: Connection) -> tuple[dict[str, object], str]:
    """A new viewer's QR through this connection's worker, and the viewer's cookie."""
    head, body = connection.request("POST", "/api/generate-qris", b'{"streamId": "demo"}',
                                    {"Content-Type": "application/json"})
    cookie = next(line.split(b":", 1)[1].split(b";")[0].strip().decode()
                  for line in head.split(b"\r\n")
                  if line.lower().startswith(b"set-cookie:"))
    qr: dict[str, object] = json.loads(body)["data"]
    return qr, cookie


def notify_paid(connection: Connection, qr: dict[str, object]) -> dict[str, object]:
    """The provider's signed notification that the QR was paid, to this worker."""
    notification = json.dumps({"eventId": f"evt-{qr['trxId']}", "trxId": qr["trxId"],
                               "amount": qr["amount"], "status": "paid",
                               "paidAt": int(time.time() * 1000)}).encode()
    signed_at = str(int(time.time()))
    signature = hmac.new(WEBHOOK_SECRET.encode(), signed_at.encode() + b"." + notification,
                         hashlib.sha256).hexdigest()
    _, answer = connection.request("POST", "/api/payment-callback", notification, {
        "Content-Type": "application/json",
        "X-Gateway-Signature": f"t={signed_at},v1={signature}"})
    data: dict[str, object] = json.loads(answer)["data"]
    return data


def test_a_payment_one_worker_receives_reaches_a_socket_another_holds(
        two_workers: ServerProcess) -> None:
    """On SQLite as on Redis: the store's change feed carries it between processes."""
    with on_worker(two_workers.port, 0) as viewer, on_worker(two_workers.port, 1) as payer:
        qr, cookie = buy(viewer)
        # Rule 1 across workers: the same viewer asking on the other one gets the same QR.
        head, body = payer.request("POST", "/api/generate-qris", b'{"streamId": "demo"}',
                                   {"Content-Type": "application/json", "Cookie": cookie})
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body)["data"]["sessionId"] == qr["sessionId"]
        # The viewer's socket is held by worker 0 ...
        viewer.websocket(f"/ws?sessionId={qr['sessionId']}", cookie)
        assert viewer.message()["status"] == "pending"
        # ... and the provider's notification reaches worker 1.
        assert notify_paid(payer, qr)["applied"] is True
        assert viewer.message()["status"] == "paid"


@pytest.fixture
def limited_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess({
        "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        "GATEWAY_STORE": f"sqlite:///{tmp_path / 'g.db'}", "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET, "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_WORKERS": "2", "GATEWAY_QR_RATE_PER_ADDRESS": "3",
        "GATEWAY_PAYMENT_WINDOW_SECONDS": "5", "GATEWAY_CLEANUP_INTERVAL_SECONDS": "1",
    }, log_path=tmp_path / "gateway.log").start()
    try:
        yield server
    finally:
        server.stop()


def test_workers_count_rate_limits_together_and_one_of_them_sweeps(
        limited_workers: ServerProcess, tmp_path: Path) -> None:
    statuses = []
    for worker in (0, 1, 0, 1):  # four new viewers from one address, over both workers
        with on_worker(limited_workers.port, worker) as connection:
            head, _ = connection.request("POST", "/api/generate-qris",
                                         b'{"streamId": "demo"}',
                                         {"Content-Type": "application/json"})
            statuses.append(int(head.split(b" ")[1]))
    # Counted together: the fourth is past the address's share, and waits in line.
    assert statuses == [201, 201, 201, 202]
    # The three QRs expire after 5 s; the sweeper marks them, in worker 0 only.
    log_path = tmp_path / "gateway.log"
    deadline = time.monotonic() + 20
    while not (sweeps := [json.loads(line) for line in log_path.read_text().splitlines()
                          if '"event":"sweep"' in line]):
        assert time.monotonic() < deadline, "nothing was swept"
        time.sleep(0.2)  # waiting for the service's own clock, not for a result
    assert {sweep["worker"] for sweep in sweeps} == {0}
