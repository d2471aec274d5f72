"""Redis's refunds (a hash each, listed by payment, by status and by time) and
cancelled shows (one hash, stream id -> JSON). A payment's refunds are read and the new
one written in one WATCH transaction on the payment's list: two instances racing for
one payment cannot both take what remains."""

from __future__ import annotations

import json
from collections.abc import Callable

from gateway.refund_model import Cancellation, Refund, RefundStatus
from gateway.store.base import Cancellations, Refunds
from gateway.store.redis.client import Part, Pipeline, bounded


class RedisRefunds(Part, Refunds):
    @bounded
    async def create(self, trx_id: str, decide: Callable[[list[Refund]], Refund]) -> Refund:
        listed = self._keys.refunds_of(trx_id)

        async def create(pipe: Pipeline) -> Refund:
            await pipe.watch(listed)
            ids = await pipe.zrange(listed, 0, -1)
            refund = decide(await self._load(ids))
            pipe.multi()
            self._queue_write(pipe, refund, None)
            return refund

        return await self._client.transaction(create)

    @bounded
    async def save(self, refund: Refund) -> None:
        key = self._keys.refund(refund.refund_id)

        async def save(pipe: Pipeline) -> None:
            await pipe.watch(key)
            before = await pipe.hget(key, "status")
            pipe.multi()
            self._queue_write(pipe, refund, before)

        await self._client.transaction(save)

    def _queue_write(self, pipe: Pipeline, refund: Refund, status_before: str | None) -> None:
        keys, refund_id = self._keys, refund.refund_id
        pipe.hset(keys.refund(refund_id), mapping=_fields(refund))
        pipe.zadd(keys.refunds_of(refund.trx_id), {refund_id: refund.number})
        pipe.zadd(keys.refunds, {refund_id: refund.requested_at_ms})
        if status_before is not None and status_before != refund.status.value:
            pipe.zrem(keys.refunds_by_status(status_before), refund_id)
        pipe.zadd(keys.refunds_by_status(refund.status.value),
                  {refund_id: refund.requested_at_ms})
        if refund.provider_refund_id:
            pipe.set(keys.refund_by_provider_id(refund.provider_refund_id), refund_id)
        if refund.status == RefundStatus.REQUESTED and refund.provider_refund_id is None:
            pipe.zadd(keys.refunds_unanswered, {refund_id: refund.updated_at_ms})
        else:
            pipe.zrem(keys.refunds_unanswered, refund_id)

    async def _load(self, ids: list[str]) -> list[Refund]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for refund_id in ids:
                pipe.hgetall(self._keys.refund(refund_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return [_refund(row) for row in rows if row]

    @bounded
    async def get(self, refund_id: str) -> Refund | None:
        found = await self._load([refund_id])
        return found[0] if found else None

    @bounded
    async def of_payment(self, trx_id: str) -> list[Refund]:
        return await self._load(await self._redis.zrange(self._keys.refunds_of(trx_id), 0, -1))

    @bounded
    async def by_provider_id(self, provider_refund_id: str) -> Refund | None:
        refund_id = await self._redis.get(self._keys.refund_by_provider_id(provider_refund_id))
        found = await self._load([refund_id]) if refund_id else []
        return found[0] if found else None

    @bounded
    async def listing(self, status: RefundStatus | None, trx_id: str | None,
                      limit: int) -> list[Refund]:
        if trx_id is not None:
            refunds = await self._load(await self._redis.zrange(
                self._keys.refunds_of(trx_id), 0, -1))
            refunds = [r for r in refunds if status is None or r.status == status]
            return sorted(refunds, key=lambda r: (r.requested_at_ms, r.refund_id),
                          reverse=True)[:limit]
        source = (self._keys.refunds if status is None
                  else self._keys.refunds_by_status(status.value))
        refunds = await self._load(await self._redis.zrevrange(source, 0, limit - 1))
        return sorted(refunds, key=lambda r: (r.requested_at_ms, r.refund_id), reverse=True)

    @bounded
    async def unanswered(self, limit: int) -> list[Refund]:
        return await self._load(await self._redis.zrange(self._keys.refunds_unanswered,
                                                         0, limit - 1))


class RedisCancellations(Part, Cancellations):
    @bounded
    async def cancel(self, cancellation: Cancellation) -> Cancellation:
        key = self._keys.cancelled_streams
        await self._redis.hsetnx(key, cancellation.stream_id, json.dumps({
            "reason": cancellation.reason, "at": cancellation.cancelled_at_ms,
            "by": cancellation.cancelled_by}))
        return _cancellation(cancellation.stream_id,
                             await self._redis.hget(key, cancellation.stream_id))

    @bounded
    async def all(self) -> dict[str, Cancellation]:
        return {stream_id: _cancellation(stream_id, text) for stream_id, text in
                (await self._redis.hgetall(self._keys.cancelled_streams)).items()}


def _cancellation(stream_id: str, text: str) -> Cancellation:
    fields = json.loads(text)
    return Cancellation(stream_id, fields["reason"], int(fields["at"]), fields["by"])


def _fields(refund: Refund) -> dict[str, str]:
    return {"refund_id": refund.refund_id, "trx_id": refund.trx_id,
            "provider": refund.provider, "number": str(refund.number),
            "amount": str(refund.amount), "reason": refund.reason,
            "status": refund.status.value, "requested_at_ms": str(refund.requested_at_ms),
            "updated_at_ms": str(refund.updated_at_ms), "requested_by": refund.requested_by,
            "session_id": refund.session_id or "", "stream_id": refund.stream_id or "",
            "provider_refund_id": refund.provider_refund_id or "",
            "failure_code": refund.failure_code or "", "note": refund.note,
            "attempts": str(refund.attempts), "by_hand": "1" if refund.by_hand else "0"}


def _refund(row: dict[str, str]) -> Refund:
    return Refund(
        refund_id=row["refund_id"], trx_id=row["trx_id"], provider=row["provider"],
        number=int(row["number"]), amount=int(row["amount"]), reason=row["reason"],
        status=RefundStatus(row["status"]), requested_at_ms=int(row["requested_at_ms"]),
        updated_at_ms=int(row["updated_at_ms"]), requested_by=row["requested_by"],
        session_id=row["session_id"] or None, stream_id=row["stream_id"] or None,
        provider_refund_id=row["provider_refund_id"] or None,
        failure_code=row["failure_code"] or None, note=row["note"],
        attempts=int(row["attempts"]), by_hand=row["by_hand"] == "1")
