"""The change feed of a SQLite file shared by several processes (GATEWAY_WORKERS, or
several `gateway serve` on one file): every status change is a row of
`session_changes`, and every process reads the rows after the last it saw. So a
viewer's WebSocket held by one worker hears a payment another worker received, and
every worker's gate learns of a revocation.

Reading the table in a loop would cost a thread hop per poll for nothing most of the
time, or lag. Instead each follower rings a doorbell: it binds a Unix datagram socket
in the abstract namespace (no file, no path-length limit) and leaves a marker file
named after it beside the database; a publisher, once its row is committed, sends one
byte to every marker's socket. A follower woken reads the new rows at once; without a
ring (a lost datagram, a new worker) it reads every second anyway. A marker whose
socket refuses is a process that is gone: its marker is removed.

A file only one process uses (and an in-memory database) has nobody to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.model import PaymentSession, SessionStatus
from gateway.store.base import Changes
from gateway.store.sqlite.connection import Database

log = logging.getLogger("gateway.store.sqlite")

# Read anyway this often when no doorbell rang (a datagram lost, a follower new).
SAFETY_POLL_S = 1.0
# Rows kept: far more than any follower falls behind between two reads; one that falls
# further behind (resubscribing after a failure) catches up from the store itself.
_KEPT_ROWS = 10_000
# How long the list of followers is reused before the folder is read again.
_MEMBERS_TTL_S = 1.0
_BATCH_ROWS = 1000


class SQLiteChanges(Changes):
    def __init__(self, database: Database, shared: bool) -> None:
        self._database = database
        self._shared = shared
        self.instance_id = uuid.uuid4().hex
        self._doorbells = Path(database.path + ".changes") if self._shared else None
        self._members: list[str] = []
        self._members_read_at_s = -_MEMBERS_TTL_S

    @property
    def shared(self) -> bool:
        """Other processes use the file too (open_sqlite's `shared`)."""
        return self._shared

    async def publish(self, session: PaymentSession) -> None:
        if not self._shared:
            return  # nobody else to tell
        body = json.dumps({**asdict(session), "status": session.status.value})

        def append(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO session_changes (origin, body) VALUES (?, ?)",
                (self.instance_id, body))
            if cursor.lastrowid is not None and cursor.lastrowid % 1000 == 0:
                conn.execute("DELETE FROM session_changes WHERE seq <= ?",
                             (cursor.lastrowid - _KEPT_ROWS,))

        await self._database.writer.run_in_transaction(append)
        self._ring_everyone()

    def _ring_everyone(self) -> None:
        assert self._doorbells is not None
        now_s = time.monotonic()
        if now_s - self._members_read_at_s > _MEMBERS_TTL_S:
            with contextlib.suppress(FileNotFoundError):
                self._members = os.listdir(self._doorbells)
            self._members_read_at_s = now_s
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ringer:
            ringer.setblocking(False)
            for member in self._members:
                if member == self.instance_id:
                    continue
                try:
                    ringer.sendto(b"!", _address(member))
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(FileNotFoundError):
                        (self._doorbells / member).unlink()  # a process that is gone
                except OSError:  # its queue is full: it has been rung already
                    pass

    async def changes(self, on_subscribed: Callable[[], Awaitable[None]]
                      ) -> AsyncIterator[PaymentSession]:
        if self._doorbells is None:
            raise NotImplementedError("a store of one process has no other processes to follow")
        rung = asyncio.Event()
        doorbell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        doorbell.setblocking(False)
        doorbell.bind(_address(self.instance_id))
        loop = asyncio.get_running_loop()
        loop.add_reader(doorbell.fileno(), _drain, doorbell, rung)
        marker = self._doorbells / self.instance_id
        try:
            self._doorbells.mkdir(exist_ok=True)
            marker.touch()
            last_seq = await self._database.reader.run(_newest_seq)
            await on_subscribed()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rung.wait(), SAFETY_POLL_S)
                rung.clear()
                while True:
                    after = last_seq
                    rows = await self._database.reader.run(
                        lambda conn: _after(conn, after))  # noqa: B023 - awaited here
                    for seq, origin, body in rows:
                        last_seq = seq
                        if origin != self.instance_id:
                            yield _session(body)
                    if len(rows) < _BATCH_ROWS:
                        break
        finally:
            loop.remove_reader(doorbell.fileno())
            doorbell.close()
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()


def _address(instance_id: str) -> str:
    return "\0gateway-changes-" + instance_id  # the abstract namespace: no file


def _drain(doorbell: socket.socket, rung: asyncio.Event) -> None:
    with contextlib.suppress(BlockingIOError):
        while doorbell.recv(64):
            pass
    rung.set()


def _newest_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM session_changes").fetchone()
    return int(row[0])


def _after(conn: sqlite3.Connection, seq: int) -> list[tuple[int, str, str]]:
    return [(row["seq"], row["origin"], row["body"]) for row in conn.execute(
        "SELECT seq, origin, body FROM session_changes WHERE seq > ? ORDER BY seq LIMIT ?",
        (seq, _BATCH_ROWS))]


def _session(body: str) -> PaymentSession:
    fields: dict[str, Any] = json.loads(body)
    return PaymentSession(**{**fields, "status": SessionStatus(fields["status"])})
