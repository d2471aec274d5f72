"""GATEWAY_WORKERS: several processes on one port, under `gateway serve`'s supervisor
(real processes: the supervisor, its workers, kill -9)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET
from tests.server_process import ServerProcess

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


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess({
        "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        "GATEWAY_STORE": f"sqlite:///{tmp_path / 'g.db'}", "GATEWAY_SECRET": SECRET,
        "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET, "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_WORKERS": "2",
    }, log_path=tmp_path / "gateway.log").start()
    try:
        yield server
    finally:
        server.stop()


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
    log = log_path.read_text()
    assert '"event":"worker_exited"' in log and "Traceback" not in log


def test_stopping_the_supervisor_stops_every_worker(two_workers: ServerProcess,
                                                     tmp_path: Path) -> None:
    pids = worker_pids(tmp_path / "gateway.log")
    two_workers.stop()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
