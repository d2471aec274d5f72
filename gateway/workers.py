"""GATEWAY_WORKERS=N: N processes serving one port, under a supervisor.

The supervisor binds the listening socket once and starts N workers (`python -m
gateway serve`, told their index and the socket's descriptor); every worker accepts on
that one socket, so the kernel hands each new connection to whichever worker is free,
and a worker that dies takes no waiting connection with it. A worker that exits is
started again (its index kept), after a pause that grows while it keeps failing.
SIGTERM or SIGINT to the supervisor stops the workers gracefully, then the supervisor.

Workers share the store: rule 1 holds as across instances (SQLite's file lock, Redis'
transactions), and status changes reach every worker through the store's change feed.
Worker 0 runs the background jobs (sweeper, reconciliation) for all of them.

Sizing: one worker per core the service may use (the WEB_CONCURRENCY convention of
hosting platforms; the Procfile passes it on), fewer when nginx or the origin share
the machine. A worker holds its own caches (segments, verified tokens), so memory
grows with N.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from gateway.logs import log_event
from gateway.serve import LISTEN_QUEUE
from gateway.settings import Settings

log = logging.getLogger("gateway.workers")

STOP_TIMEOUT_S = 15.0  # a worker's graceful shutdown (WebSockets get 1001) takes ~10 s
RESTART_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
STEADY_AFTER_S = 30.0  # a worker that ran this long restarts at once when it dies


def listening_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(LISTEN_QUEUE)  # each worker sets it again once it serves
    sock.set_inheritable(True)
    return sock


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started_s: float
    failures: int = 0  # quick exits in a row


@dataclass
class Supervisor:
    settings: Settings
    sock: socket.socket
    workers: dict[int, _Worker] = field(default_factory=dict)
    stopping: bool = False

    def start(self, index: int, failures: int = 0) -> None:
        env = dict(os.environ, GATEWAY_WORKER_INDEX=str(index),
                   GATEWAY_WORKER_FD=str(self.sock.fileno()))
        process = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env,
                                   pass_fds=(self.sock.fileno(),))
        self.workers[index] = _Worker(index, process, time.monotonic(), failures)
        log_event(log, "worker_started", worker=index, pid=process.pid)

    def run(self) -> int:
        for index in range(self.settings.workers):
            self.start(index)
        host, port = self.sock.getsockname()[:2]
        print(f"======== Running on http://{host}:{port} with {self.settings.workers} "
              "workers ========", file=sys.stderr, flush=True)
        while not self.stopping:
            time.sleep(0.1)  # a signal cuts it short
            for worker in list(self.workers.values()):
                code = worker.process.poll()
                if code is not None and not self.stopping:
                    self._restart(worker, code)
        return self._stop_all()

    def _restart(self, worker: _Worker, code: int) -> None:
        ran_s = time.monotonic() - worker.started_s
        failures = 0 if ran_s >= STEADY_AFTER_S else worker.failures + 1
        delay_s = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S)) - 1] if failures else 0
        log_event(log, "worker_exited", level=logging.WARNING, worker=worker.index,
                  pid=worker.process.pid, code=code, ranSeconds=round(ran_s, 1),
                  restartInSeconds=delay_s)
        del self.workers[worker.index]
        time.sleep(delay_s)
        if not self.stopping:
            self.start(worker.index, failures)

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _stop_all(self) -> int:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers.values():
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.sock.close()
        return 0


def supervise(settings: Settings) -> int:
    try:
        sock = listening_socket(settings)
    except OSError as exc:
        print(f"gateway: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 2
    supervisor = Supervisor(settings, sock)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()
