"""What only the SQLite backend has to prove: WAL durability settings, atomicity across
processes sharing one file, and that every query it runs is an index lookup, so its cost
does not grow with the number of sessions stored."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from gateway.ledger import LedgerQuery, LedgerStatus, Settlement
from gateway.model import SessionStatus
from gateway.store.sqlite import open_sqlite
from gateway.store.sqlite.schema import MIGRATIONS
from tests.store.conftest import ACCESS_MS, T0, WINDOW_MS, find_active, pay, pending


async def test_file_is_in_wal_mode_and_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    store = await open_sqlite(path)
    session, _ = await store.sessions.insert_pending(pending(), T0)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = await open_sqlite(path)  # migrations are not re-run
    assert await reopened.sessions.get(session.session_id) == session
    await reopened.close()


def _race_to_insert(path: str, start: multiprocessing.synchronize.Event) -> tuple[str, bool]:
    async def run() -> tuple[str, bool]:
        store = await open_sqlite(path)
        start.wait()
        session, inserted = await store.sessions.insert_pending(pending(), T0)
        await store.close()
        return session.session_id, inserted

    return asyncio.run(run())


def test_processes_sharing_the_file_cannot_create_two_active_sessions(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    asyncio.run(_create_schema(path))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(6) as pool:
            pending_results = [pool.apply_async(_race_to_insert, (path, start)) for _ in range(6)]
            start.set()
            results = [result.get(timeout=60) for result in pending_results]
    assert sum(inserted for _, inserted in results) == 1
    assert len({session_id for session_id, _ in results}) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM payment_sessions").fetchone()[0] == 1


async def _create_schema(path: str) -> None:
    await (await open_sqlite(path)).close()


async def test_the_partial_unique_index_refuses_a_second_active_row(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    store = await open_sqlite(path)
    await store.sessions.insert_pending(pending(), T0)
    await store.close()
    second = pending()
    with sqlite3.connect(path) as conn:
        try:
            conn.execute(
                "INSERT INTO payment_sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (second.session_id, "alice", "demo", "simulator", "T2", 1000, 0, "q",
                 "pending", T0, None, T0 + 1, None, None, None, None),
            )
        except sqlite3.IntegrityError as exc:
            assert "UNIQUE" in str(exc)
        else:
            raise AssertionError("a second active session was accepted")


async def test_every_statement_is_an_index_lookup(tmp_path: Path) -> None:
    """The plans, not timings: a statement that scans a table gets slower as sessions
    pile up (bench/ measures 1,000 vs 1,000,000; this keeps it from regressing)."""
    path = str(tmp_path / "g.db")
    statements: list[str] = []

    def trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    await (await open_sqlite(path)).close()  # migrations run once, not traced
    store = await open_sqlite(path, on_connect=trace)
    # Exercise every store method.
    session, _ = await store.sessions.insert_pending(pending(), T0)
    await store.sessions.get(session.session_id)
    await store.sessions.get_by_trx("simulator", session.trx_id)
    await find_active(store.sessions, "alice", "demo", T0)
    await store.sessions.list_active("alice", T0)
    await pay(store.sessions, session, at_ms=T0 + 1)
    await store.ledger.notifications(session.trx_id)
    grant, _ = await store.grants.grant_for_device(session.session_id, "browser:1", T0, "g",
                                                   T0)
    await store.grants.claim_place(session.session_id, grant.grant_id, "10.0.0.1", T0,
                                   T0 - 1, 2)
    await store.grants.playing(session.session_id, T0 - 1)
    await store.grants.end_grant(grant.grant_id, T0)
    await store.sessions.expire_due(T0 + WINDOW_MS + ACCESS_MS, 100)
    await store.sessions.prune_unpaid(T0 + 10 * ACCESS_MS, 100)
    for query in (LedgerQuery(stream_id="demo"), LedgerQuery(reason="paid"),
                  LedgerQuery(stream_id="demo", reason="paid"),
                  LedgerQuery(status=LedgerStatus.REFUSED, from_ms=T0),
                  LedgerQuery(status=LedgerStatus.ATTENTION),
                  LedgerQuery(status=LedgerStatus.SETTLED, to_ms=T0),
                  LedgerQuery(before=(T0, 5)), LedgerQuery(from_ms=T0, to_ms=T0 + 1)):
        await store.ledger.ledger(query, 50)
    await store.ledger.ledger_entry(1)
    await store.ledger.settle(1, Settlement(T0, "Sari", "refunded"))
    await store.ledger.sales(T0, T0 + 30 * 86_400_000)
    await store.sessions.paid_now(T0)
    await store.sessions.sessions_of_user("alice", 50)
    await store.grants.playing_counts(["a", "b"], T0 - 30_000)
    await store.close()

    queries = {s for s in statements
               if s.split()[0].upper() in ("SELECT", "UPDATE", "DELETE")
               and any(table in s for table in ("payment_sessions", "provider_notifications",
                                                "ledger_tags", "device_places"))
               # A migration's one-time backfill may read every row, once.
               and not any(s.strip() in script for script in MIGRATIONS
                           if isinstance(script, str))}
    queries |= {s for s in statements if "sales_hourly" in s and s.startswith("SELECT")}
    assert len(queries) >= 25
    with sqlite3.connect(path) as conn:
        for query in queries:
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
            # Counting paid sessions walks the partial index of paid ones: the sweeper
            # keeps that to the sessions whose access is open now.
            plan_rest = plan.replace("SCAN payment_sessions USING INDEX payment_sessions_paid",
                                     "")
            assert "SCAN payment_sessions" not in plan_rest, (query, plan)
            assert "SCAN sales_hourly" not in plan, (query, plan)
            assert "SCAN ledger_tags" not in plan, (query, plan)
            assert "SCAN device_places" not in plan, (query, plan)
            # No sorting of all rows (one purchase's few places may be sorted).
            assert "USE TEMP B-TREE" not in plan or "device_places WHERE session_id" in query, (
                query, plan)
            if "WHERE" in query.upper():
                assert "SCAN provider_notifications" not in plan, (query, plan)
    # The unfiltered listing in the order entries were written is the one exception:
    # newest first by primary key.


async def test_expired_status_is_stored(tmp_path: Path) -> None:
    store = await open_sqlite(str(tmp_path / "g.db"))
    session, _ = await store.sessions.insert_pending(pending(), T0)
    (expired,) = await store.sessions.expire_due(T0 + WINDOW_MS, 10)
    assert expired.status == SessionStatus.EXPIRED
    assert await store.sessions.get(session.session_id) == expired
    await store.close()


async def test_a_failing_call_does_not_disturb_the_others_in_its_batch(tmp_path: Path) -> None:
    from dataclasses import replace

    store = await open_sqlite(str(tmp_path / "g.db"))
    good = [pending(f"user{i}") for i in range(10)]
    bad = replace(pending("mallory"), amount=0)  # violates CHECK (amount > 0)
    results = await asyncio.gather(*(store.sessions.insert_pending(s, T0)
                                     for s in [*good[:5], bad, *good[5:]]),
                                   return_exceptions=True)
    assert isinstance(results[5], sqlite3.IntegrityError)
    assert all(result == (session, True)
               for result, session in zip(results[:5] + results[6:], good, strict=True))
    assert await find_active(store.sessions, "mallory", "demo", T0) is None
    await store.close()


async def test_a_ledger_from_before_the_tags_is_listed_as_the_model_says(tmp_path: Path
                                                                         ) -> None:
    """A file of schema version 7, when the ledger's filters were indexes: opening it
    lists what it held under the tags `ledger_tags` gives."""
    path = str(tmp_path / "g.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:7]:
        assert isinstance(script, str)
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 7")
    conn.executemany(
        "INSERT INTO provider_notifications (provider, event_id, trx_id, session_id, amount,"
        " reported_status, paid_at_ms, received_at_ms, applied, reason, raw_body, stream_id,"
        " needs_person, settled_at_ms, settled_by, settled_note)"
        " VALUES ('simulator', ?, ?, ?, 1000, 'paid', ?, ?, ?, ?, '{}', ?, ?, ?, ?, ?)",
        [("e1", "T1", "s1", T0, T0, 1, "paid", "demo", 0, None, None, None),
         ("e2", "T2", "s2", T0 + 1, T0 + 1, 0, "amount_mismatch", "demo", 1, T0 + 5, "Sari",
          "refunded"),
         ("e3", "GHOST", None, T0 + 2, T0 + 2, 0, "unknown_transaction", None, 1, None, None,
          None)])
    conn.close()
    store = await open_sqlite(path)
    try:
        async def listed(**query: Any) -> list[str]:
            return [entry.notification.event_id
                    for entry in await store.ledger.ledger(LedgerQuery(**query), 10)]

        assert await listed() == ["e3", "e2", "e1"]
        assert await listed(status=LedgerStatus.ATTENTION) == ["e3"]
        assert await listed(status=LedgerStatus.SETTLED) == ["e2"]
        assert await listed(status=LedgerStatus.REFUSED, stream_id="demo") == ["e2"]
        assert await listed(reason="paid", stream_id="demo") == ["e1"]
        settled = await store.ledger.settle(3, Settlement(T0 + 9, "Sari", "refunded"))
        assert settled is not None and await listed(status=LedgerStatus.SETTLED) == [
            "e3", "e2"]
    finally:
        await store.close()
