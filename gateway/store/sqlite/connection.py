"""The SQLite connections every part of the store shares (gateway/store/sqlite/).

- Durable: WAL with `synchronous=FULL`, so a committed payment survives `kill -9` and a
  power cut. A payment is worth an fsync (about 0.25 ms on this class of disk).
- Atomic: every write is one `BEGIN IMMEDIATE` transaction (`run_in_transaction`: it
  takes the write lock up front, so two processes on one file serialise instead of
  failing at COMMIT).
- Off the event loop: all calls run on two dedicated threads, one connection each: a
  writer, and a reader that WAL lets run while a write is being fsynced. An in-memory
  database is one connection, so it gets one thread for both. Calls queued while a
  thread is busy are run as one batch (see `Connection`).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreUnavailable

T = TypeVar("T")


class Connection:
    """One SQLite connection owned by one thread; every call hops onto that thread.

    A hop costs ~80 us on a small VM, ten times a primary-key query, so the thread
    drains every job queued since it last woke and hands all their results back to the
    event loop in one wake-up: under load, the hop is paid once per batch, not per call.
    """

    def __init__(self, path: str, *, read_only: bool,
                 on_connect: Callable[[sqlite3.Connection], None] | None,
                 timeout_s: float, durable: bool = True) -> None:
        self._path = path
        self._durable = durable
        self._timeout_s = timeout_s
        self._read_only = read_only
        self._on_connect = on_connect
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name="sqlite-" + ("reader" if read_only else "writer"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        # Another process holding the write lock is waited for this long, then the
        # call fails (a 503), rather than queueing everything behind it unseen.
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._timeout_s,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row  # rows by column name, never by position
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
        if self._path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            # What is not worth an fsync (rate-limit counts) is written without one.
            conn.execute("PRAGMA synchronous = " + ("FULL" if self._durable else "OFF"))
        if self._read_only:
            conn.execute("PRAGMA query_only = ON")
        if self._on_connect is not None:
            self._on_connect(conn)
        return conn

    def _work(self) -> None:
        assert self._loop is not None
        conn = self._connect()
        try:
            running = True
            while running:
                batch = [self._jobs.get()]
                while True:
                    try:
                        batch.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
                for job in batch:
                    if job is None:
                        running = False
                        continue
                    fn, future, deadline = job
                    if time.monotonic() > deadline:
                        # Its caller has been told the store is unavailable: doing it
                        # now would surprise them (and keep the queue long).
                        outcomes.append((future, None, StoreUnavailable()))
                        continue
                    try:
                        outcomes.append((future, fn(conn), None))
                    except sqlite3.OperationalError as exc:
                        # Locked or busy past busy_timeout (another process writes).
                        outcomes.append((future, None, StoreUnavailable()
                                         if _is_contention(exc) else exc))
                    except BaseException as exc:  # delivered to the awaiting coroutine
                        outcomes.append((future, None, exc))
                if outcomes:
                    self._loop.call_soon_threadsafe(_deliver, outcomes)
        finally:
            conn.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._thread.start()
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, future, time.monotonic() + self._timeout_s))
        try:
            # A little past the job's own deadline: the thread answers by then, unless
            # one statement runs that long.
            async with asyncio.timeout(self._timeout_s + 1):
                return await asyncio.shield(future)
        except TimeoutError:
            # Whatever the thread makes of it, nobody is waiting for it now.
            future.add_done_callback(_discard_outcome)
            future.cancel()
            raise StoreUnavailable() from None

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(transaction)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)


_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", float]


def _discard_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not report it as lost


def _is_contention(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Database:
    """The writer and the reader of one database file (one connection for both when it
    is in memory), as every part of the store uses them."""

    def __init__(self, path: str,
                 on_connect: Callable[[sqlite3.Connection], None] | None = None,
                 timeout_s: float = 5.0, *, durable: bool = True,
                 reader: bool = True) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.writer = Connection(path, read_only=False, on_connect=on_connect,
                                 timeout_s=timeout_s, durable=durable)
        self.reader = (self.writer if path == ":memory:" or not reader
                       else Connection(path, read_only=True, on_connect=on_connect,
                                       timeout_s=timeout_s))

    async def ping(self) -> None:
        # Through the writer, taking the write lock: a stuck write transaction, ours or
        # another process's, is what would make us unready.
        def take_write_lock(conn: sqlite3.Connection) -> None:
            if self.path != ":memory:":
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")

        await self.writer.run(take_write_lock)

    async def close(self) -> None:
        if self.reader is not self.writer:
            await self.reader.close()
        await self.writer.close()
