"""A payment session as Redis keeps it: one hash (whose fields the change feed's
messages carry too), and the indexes kept in step with it in the same transaction:
the pointers by trx and by viewer and stream (rule 1's lock), and sorted sets for the
sweeper's due, prunable and ended-early queries, reconciliation, a viewer's sessions
and purchases, and the console's paid-now count."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.model import ACTIVE_STATUSES, PaymentSession, SessionStatus, tokens_live_until_ms
from gateway.store.redis.client import Pipeline
from gateway.store.redis.keys import Keys


def queue_session(pipe: Pipeline, keys: Keys, session: PaymentSession,
                  pointer: str | None) -> str | None:
    """Queue the writes that store `session` as it now is, with every index kept in
    step. `pointer` is what the viewer's active pointer holds so far in this
    transaction; the return value is what it holds after."""
    session_id = session.session_id
    active_key = keys.active(session.user_id, session.stream_id)
    # The pointer's key name rides along, for the notification script to follow.
    pipe.hset(keys.session(session_id),
              mapping={**session_fields(session), "active_key": active_key})
    pipe.set(keys.trx(session.provider, session.trx_id), session_id)
    if session.paid_at_ms is not None:
        pipe.zadd(keys.user_paid(session.user_id), {session_id: session.paid_at_ms})
    pipe.zadd(keys.created, {session_id: session.created_at_ms})
    if session.paid_at_ms is None:
        pipe.zadd(keys.unpaid, {session_id: session.created_at_ms})
    else:
        pipe.zrem(keys.unpaid, session_id)
    pipe.zadd(keys.user_sessions(session.user_id), {session_id: session.created_at_ms})
    if session.status == SessionStatus.PAID:
        pipe.zadd(keys.paid_now(session.stream_id), {session_id: session.expires_at_ms})
    else:
        pipe.zrem(keys.paid_now(session.stream_id), session_id)
    if session.status in ACTIVE_STATUSES:
        pipe.zadd(keys.due, {session_id: session.expires_at_ms})
        pipe.sadd(keys.user_active(session.user_id), session_id)
        pipe.set(active_key, session_id)
        return session_id
    pipe.zrem(keys.due, session_id)
    pipe.srem(keys.user_active(session.user_id), session_id)
    if session.paid_at_ms is None:
        pipe.zadd(keys.prunable, {session_id: session.expires_at_ms})
    else:
        pipe.zadd(keys.ended, {session_id: tokens_live_until_ms(session) or 0})
    if pointer == session_id:
        # A renewal that ends hands the pointer back to the window it continued, which
        # may still be paid and running.
        if session.renews:
            pipe.set(active_key, session.renews)
            return session.renews
        pipe.delete(active_key)
        return None
    return pointer


async def load_sessions(redis: Any, keys: Keys, session_ids: Iterable[str]
                        ) -> list[PaymentSession]:
    """The sessions that exist among `session_ids`, in one round trip."""
    ids = list(session_ids)
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hgetall(keys.session(session_id))
        rows: list[dict[str, str]] = await pipe.execute()
    return [session for session in map(session_from_fields, rows) if session is not None]


async def watch_session(pipe: Pipeline, keys: Keys, session_id: str | None
                        ) -> PaymentSession | None:
    """Inside a transaction: WATCH a session's hash, then read it."""
    if not session_id:
        return None
    key = keys.session(session_id)
    await pipe.watch(key)
    return session_from_fields(await pipe.hgetall(key))


async def watch_active_pointer(pipe: Pipeline, keys: Keys, user_id: str, stream_id: str
                               ) -> tuple[str | None, PaymentSession | None]:
    """Inside a transaction: WATCH the viewer's active pointer; return it and the
    session it names (watched too)."""
    active_key = keys.active(user_id, stream_id)
    await pipe.watch(active_key)
    pointer: str | None = await pipe.get(active_key)
    return pointer, await watch_session(pipe, keys, pointer)


def session_fields(session: PaymentSession) -> dict[str, str]:
    return {
        "session_id": session.session_id, "user_id": session.user_id,
        "stream_id": session.stream_id, "provider": session.provider,
        "trx_id": session.trx_id, "amount": str(session.amount), "fee": str(session.fee),
        "qr_string": session.qr_string, "status": session.status.value,
        "created_at_ms": str(session.created_at_ms),
        "paid_at_ms": "" if session.paid_at_ms is None else str(session.paid_at_ms),
        "expires_at_ms": str(session.expires_at_ms),
        "starts_at_ms": "" if session.starts_at_ms is None else str(session.starts_at_ms),
        "renews": session.renews or "",
        "paid_until_ms": "" if session.paid_until_ms is None else str(session.paid_until_ms),
        "ended_reason": session.ended_reason or "",
    }


def session_from_fields(fields: dict[str, str]) -> PaymentSession | None:
    if not fields:
        return None
    return PaymentSession(
        session_id=fields["session_id"], user_id=fields["user_id"],
        stream_id=fields["stream_id"], provider=fields["provider"],
        trx_id=fields["trx_id"], amount=int(fields["amount"]), fee=int(fields["fee"]),
        qr_string=fields["qr_string"], status=SessionStatus(fields["status"]),
        created_at_ms=int(fields["created_at_ms"]),
        paid_at_ms=int(fields["paid_at_ms"]) if fields["paid_at_ms"] else None,
        expires_at_ms=int(fields["expires_at_ms"]),
        # Sessions stored before tickets ahead existed opened at payment.
        starts_at_ms=_optional_int(fields.get("starts_at_ms", fields["paid_at_ms"])),
        renews=fields.get("renews") or None,
        paid_until_ms=_optional_int(fields.get("paid_until_ms", "")),
        ended_reason=fields.get("ended_reason") or None,
    )


def pairs(flat: list[str]) -> dict[str, str]:
    """A hash as a Lua script returns it (field, value, field, value...)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _optional_int(text: str) -> int | None:
    return int(text) if text else None
