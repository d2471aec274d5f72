"""Redis's ledger: one hash per entry, numbered by a counter (newest is highest), listed
by number, by trx, and under each tag `ledger.ledger_tags` gives it (a sorted set per
tag, scored by time); and one hash of hourly sales counters per stream.

Entries and counters are queued into the payment's own transaction by sessions.py
(`queue_entry`, `queue_qr`, `queue_ticket`); settling is this part's one write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.ledger import (
    HOUR_MS,
    LedgerEntry,
    LedgerQuery,
    SalesBucket,
    Settlement,
    decide_settlement,
    hour_start,
    ledger_tags,
)
from gateway.model import Notification, PaymentDecision, PaymentSession
from gateway.store.base import Ledger
from gateway.store.redis.client import Part, Pipeline, bounded
from gateway.store.redis.keys import Keys


class RedisLedger(Part, Ledger):
    @bounded
    async def notifications(self, trx_id: str | None = None,
                            limit: int = 100) -> list[LedgerEntry]:
        if trx_id is None:
            numbers = await self._redis.zrevrange(self._keys.notifications, 0, limit - 1)
        else:
            numbers = await self._redis.lrange(self._keys.notifications_by_trx(trx_id), 0,
                                               limit - 1)
        return await load_entries(self._redis, self._keys, [int(n) for n in numbers])

    @bounded
    async def ledger(self, query: LedgerQuery, limit: int) -> list[LedgerEntry]:
        scan = query.scan()
        source = self._keys.ledger_tag(scan.tag)
        high = "+inf" if scan.before is None else f"({_score(*scan.before)}"
        low = "-inf" if scan.since is None else str(_score(*scan.since))
        found: list[LedgerEntry] = []
        while len(found) < limit:
            listed: list[tuple[str, float]] = await self._redis.zrevrangebyscore(
                source, high, low, start=0, num=limit, withscores=True)
            entries = await load_entries(self._redis, self._keys,
                                         [int(member) for member, _ in listed])
            found += [entry for entry in entries if query.matches(entry)]
            if len(listed) < limit:
                break
            high = f"({int(listed[-1][1])}"
        return found[:limit]

    @bounded
    async def ledger_entry(self, entry_id: int) -> LedgerEntry | None:
        found = await load_entries(self._redis, self._keys, [entry_id])
        return found[0] if found else None

    @bounded
    async def settle(self, entry_id: int, settlement: Settlement) -> LedgerEntry | None:
        key = self._keys.notification(entry_id)

        async def settle(pipe: Pipeline) -> LedgerEntry | None:
            await pipe.watch(key)
            row = await pipe.hgetall(key)
            decision = decide_settlement(_entry(entry_id, row), settlement) if row else None
            if decision is None:
                return None
            pipe.multi()
            pipe.hset(key, mapping={"settled_at_ms": str(settlement.settled_at_ms),
                                    "settled_by": settlement.settled_by,
                                    "settled_note": settlement.note})
            for tag in decision.untag:
                pipe.zrem(self._keys.ledger_tag(tag), str(entry_id))
            queue_tags(pipe, self._keys, decision.entry, decision.tag)
            return decision.entry

        return await self._client.transaction(settle)

    @bounded
    async def count_refund(self, stream_id: str, at_ms: int, amount: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            _queue_count(pipe, self._keys, stream_id, "r", at_ms, amount)
            await pipe.execute()

    @bounded
    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        hours = list(range(hour_start(from_ms) + (HOUR_MS if from_ms % HOUR_MS else 0),
                           to_ms, HOUR_MS))
        stream_ids = sorted(await self._redis.smembers(self._keys.sales_streams))
        if not hours or not stream_ids:
            return []
        fields = [f"{kind}:{hour}" for hour in hours for kind in ("q", "t", "a", "r")]
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hmget(self._keys.sales(stream_id), fields)
            counters: list[list[str | None]] = await pipe.execute()
        buckets: list[SalesBucket] = []
        for index, hour in enumerate(hours):
            for stream_id, values in zip(stream_ids, counters, strict=True):
                qrs, sold, money, back = (int(value or 0)
                                          for value in values[4 * index:4 * index + 4])
                if qrs or sold or money or back:
                    buckets.append(SalesBucket(stream_id, hour, qrs, sold, money, back))
        return buckets


def queue_entry(pipe: Pipeline, keys: Keys, number: int, note: Notification,
                decision: PaymentDecision, stream_id: str | None) -> None:
    """Queue the writes that append entry `number`: its hash, its places in the
    ledger's orders and tags, and the markers by which a replayed delivery or a
    repeated event is known (sessions.py's notification script reads them)."""
    pipe.hset(keys.notification(number), mapping={
        **_notification_fields(note, decision), "stream_id": stream_id or ""})
    pipe.zadd(keys.notifications, {str(number): number})
    pipe.lpush(keys.notifications_by_trx(note.trx_id), str(number))
    entry = LedgerEntry(number, note, decision.applied, decision.reason.value,
                        decision.session_id, stream_id)
    queue_tags(pipe, keys, entry, ledger_tags(entry))
    pipe.set(keys.event(note.provider, note.event_id), "1")
    if note.replay_key is not None:
        pipe.set(keys.replay(note.replay_key), str(number))


def queue_tags(pipe: Pipeline, keys: Keys, entry: LedgerEntry, tags: Iterable[str]) -> None:
    score = _score(*entry.cursor)
    for tag in tags:
        pipe.zadd(keys.ledger_tag(tag), {str(entry.entry_id): score})


def queue_qr(pipe: Pipeline, keys: Keys, session: PaymentSession) -> None:
    """Count a session's QR in the hour it was created."""
    _queue_count(pipe, keys, session.stream_id, "q", session.created_at_ms, 1)


def queue_ticket(pipe: Pipeline, keys: Keys, session: PaymentSession) -> None:
    """Count a paid session's ticket and takings in the hour it was paid."""
    assert session.paid_at_ms is not None
    _queue_count(pipe, keys, session.stream_id, "t", session.paid_at_ms, 1)
    _queue_count(pipe, keys, session.stream_id, "a", session.paid_at_ms, session.amount)


async def load_entries(redis: Any, keys: Keys, numbers: list[int]) -> list[LedgerEntry]:
    """The entries that exist among `numbers`, in one round trip."""
    if not numbers:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for number in numbers:
            pipe.hgetall(keys.notification(number))
        rows: list[dict[str, str]] = await pipe.execute()
    return [_entry(number, row) for number, row in zip(numbers, rows, strict=True) if row]


def _queue_count(pipe: Pipeline, keys: Keys, stream_id: str, kind: str, at_ms: int,
                 amount: int) -> None:
    pipe.hincrby(keys.sales(stream_id), f"{kind}:{hour_start(at_ms)}", amount)
    pipe.sadd(keys.sales_streams, stream_id)


def _score(received_at_ms: int, number: int) -> int:
    """Time order with the entry number breaking ties, in one exact float (below 2**53
    until the year 2255): the number's last three digits, as no two of the last
    thousand entries arrive in the same millisecond."""
    return received_at_ms * 1000 + number % 1000


def _notification_fields(note: Notification, decision: PaymentDecision) -> dict[str, str]:
    return {
        "provider": note.provider, "event_id": note.event_id, "trx_id": note.trx_id,
        "amount": str(note.amount), "reported_status": note.reported_status,
        "paid_at_ms": "" if note.paid_at_ms is None else str(note.paid_at_ms),
        "received_at_ms": str(note.received_at_ms), "raw_body": note.raw_body,
        "replay_key": note.replay_key or "", "applied": "1" if decision.applied else "0",
        "reason": decision.reason.value, "session_id": decision.session_id or "",
        "fee": str(note.fee),
    }


def _entry(number: int, row: dict[str, str]) -> LedgerEntry:
    settled_at = row.get("settled_at_ms")
    return LedgerEntry(
        entry_id=number,
        notification=Notification(
            provider=row["provider"], event_id=row["event_id"], trx_id=row["trx_id"],
            amount=int(row["amount"]), reported_status=row["reported_status"],
            paid_at_ms=int(row["paid_at_ms"]) if row["paid_at_ms"] else None,
            received_at_ms=int(row["received_at_ms"]), raw_body=row["raw_body"],
            replay_key=row["replay_key"] or None, fee=int(row.get("fee") or 0)),
        applied=row["applied"] == "1", reason=row["reason"],
        session_id=row["session_id"] or None, stream_id=row.get("stream_id") or None,
        settlement=Settlement(int(settled_at), row["settled_by"], row["settled_note"])
        if settled_at else None,
    )
