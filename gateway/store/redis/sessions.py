"""Redis's payment sessions (rows.py says how each is kept).

Rule 1 is held by one pointer key per viewer and stream that names their active
session; every transaction that creates or ends an active session watches it, so two
instances racing for one viewer cannot both win. A notification's reads are one Lua
script (a round trip costs ~0.25 ms through redis-py, and there would be a dozen); the
script follows keys it derives, so this store needs one Redis server or a primary with
replicas, not Redis Cluster. A payment's ledger entry and sales counters are queued
into its own MULTI (ledger.py's `queue_entry`, `queue_ticket`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.exceptions import WatchError

from gateway.model import (
    ACTIVE_STATUSES,
    ENDED_BY_REVOCATION,
    Notification,
    NotificationReason,
    PaymentContext,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
    decide_new_session,
    decide_revocation,
    expire_stale,
)
from gateway.store.base import PaymentSessions
from gateway.store.redis.client import Client, Part, Pipeline, bounded
from gateway.store.redis.ledger import queue_entry, queue_qr, queue_ticket
from gateway.store.redis.rows import (
    load_sessions,
    pairs,
    queue_session,
    session_from_fields,
    watch_active_pointer,
    watch_session,
)

# An operator's filtered listing walks at most this many of the newest sessions.
_PAYMENTS_SCAN = 20_000

# Everything a notification's decision reads, in one round trip: whether this delivery
# was replayed, whether its event was seen, its session, and the viewer's other
# sessions for the stream that may be active: the one the active pointer names, and
# those it and this one renew (rule 2's exception). KEYS: trx pointer, event marker,
# ledger counter.
# ARGV: key prefix, replay marker key or "", and "number" to also draw the ledger number
# for the notification (a counter: a number drawn by an attempt that is retried is
# skipped).
_READ_NOTIFICATION_CONTEXT = """
local number = 0
if ARGV[3] == 'number' then number = redis.call('INCR', KEYS[3]) end
local replayed = 0
if ARGV[2] ~= '' then replayed = redis.call('EXISTS', ARGV[2]) end
local seen = redis.call('EXISTS', KEYS[2])
local sid = redis.call('GET', KEYS[1])
if not sid then return {replayed, seen, '', {}, '', '', {}, number} end
local session_key = ARGV[1] .. 'session:' .. sid
local session = redis.call('HGETALL', session_key)
local active_key = redis.call('HGET', session_key, 'active_key') or ''
local pointer = ''
local related = {}
local listed = {[sid] = true}
local function add(id)
  if id and id ~= '' and not listed[id] then
    listed[id] = true
    local fields = redis.call('HGETALL', ARGV[1] .. 'session:' .. id)
    if #fields > 0 then related[#related + 1] = fields end
  end
end
if active_key ~= '' then
  pointer = redis.call('GET', active_key) or ''
  add(pointer)
  if pointer ~= '' then add(redis.call('HGET', ARGV[1] .. 'session:' .. pointer, 'renews')) end
end
add(redis.call('HGET', session_key, 'renews'))
return {replayed, seen, sid, session, active_key, pointer, related, number}
"""


@dataclass(frozen=True, slots=True)
class _NotificationContext:
    replayed: bool
    event_seen: bool
    session: PaymentSession | None
    pointer: str | None
    # The other sessions of the viewer's for the stream that may be active: what the
    # pointer names, and what it and `session` renew.
    related: tuple[PaymentSession, ...]
    derived_keys: tuple[str, ...]  # the keys read through the others: to WATCH


class RedisSessions(Part, PaymentSessions):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._read_notification_context = client.redis.register_script(
            _READ_NOTIFICATION_CONTEXT)
        # Notifications of one transaction being applied in this process, and how many
        # wait for each. Copies of one notification (a provider retrying, 200 at once)
        # all WATCH the same keys, and each commit sends every other copy round again:
        # taken one at a time here, only the instances contend, not every copy.
        self._applying: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        lock, waiting = self._applying.get(key, (asyncio.Lock(), 0))
        self._applying[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._applying[key]
            if waiting == 1:
                del self._applying[key]
            else:
                self._applying[key] = (lock, waiting - 1)

    # --- reads -----------------------------------------------------------------

    @bounded
    async def get(self, session_id: str) -> PaymentSession | None:
        return await self._one(session_id)

    @bounded
    async def get_many(self, session_ids: list[str]) -> list[PaymentSession]:
        return await load_sessions(self._redis, self._keys, session_ids)

    @bounded
    async def get_by_trx(self, provider: str, trx_id: str) -> PaymentSession | None:
        return await self._one(await self._redis.get(self._keys.trx(provider, trx_id)))

    @bounded
    async def active_for_stream(self, user_id: str, stream_id: str, now_ms: int
                                ) -> list[PaymentSession]:
        head = await self._one(await self._redis.get(self._keys.active(user_id, stream_id)))
        found = [head] if head is not None else []
        if head is not None and head.renews:
            renewed = await self._one(head.renews)
            if renewed is not None:
                found.append(renewed)
        return sorted((session for session in found if session.is_active(now_ms)),
                      key=lambda session: (session.created_at_ms, session.session_id))

    @bounded
    async def list_paid(self, user_id: str, limit: int) -> list[PaymentSession]:
        ids = await self._redis.zrevrange(self._keys.user_paid(user_id), 0, limit - 1)
        return await load_sessions(self._redis, self._keys, ids)

    @bounded
    async def list_active(self, user_id: str, now_ms: int) -> list[PaymentSession]:
        ids = await self._redis.smembers(self._keys.user_active(user_id))
        sessions = [session for session in await load_sessions(self._redis, self._keys, ids)
                    if session.is_active(now_ms)]
        return sorted(sessions, key=lambda session: (session.created_at_ms, session.session_id))

    @bounded
    async def ended_early(self, now_ms: int) -> list[PaymentSession]:
        ids = await self._redis.zrangebyscore(self._keys.ended, f"({now_ms}", "+inf")
        return [session for session in await load_sessions(self._redis, self._keys, ids)
                if session.status == SessionStatus.EXPIRED and session.paid_at_ms is not None]

    @bounded
    async def unpaid_created_between(self, created_after_ms: int, created_before_ms: int,
                                     limit: int) -> list[PaymentSession]:
        ids = await self._redis.zrangebyscore(self._keys.unpaid, f"({created_after_ms}",
                                              created_before_ms, start=0, num=limit)
        return [session for session in await load_sessions(self._redis, self._keys, ids)
                if session.paid_at_ms is None]

    @bounded
    async def payments(self, status: SessionStatus | None, stream_id: str | None,
                       limit: int) -> list[PaymentSession]:
        # Filters are applied while walking the creation index, page by page; an
        # operator's listing, bounded by _PAYMENTS_SCAN so a rare filter cannot walk all.
        found: list[PaymentSession] = []
        start = 0
        page = max(limit, 200)
        while len(found) < limit and start < _PAYMENTS_SCAN:
            ids = await self._redis.zrevrange(self._keys.created, start, start + page - 1)
            if not ids:
                break
            for session in await load_sessions(self._redis, self._keys, ids):
                if (status is None or session.status == status) and \
                        (stream_id is None or session.stream_id == stream_id):
                    found.append(session)
            start += page
        found.sort(key=lambda session: (-session.created_at_ms, session.session_id))
        return found[:limit]

    @bounded
    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        ids = await self._redis.zrevrange(self._keys.user_sessions(user_id), 0, limit - 1)
        sessions = await load_sessions(self._redis, self._keys, ids)
        return sorted(sessions, key=lambda session: (session.created_at_ms,
                                                     session.session_id), reverse=True)

    @bounded
    async def paid_now(self, now_ms: int) -> dict[str, list[str]]:
        # Every stream a session was ever made for has sales counters (ledger.py).
        stream_ids = sorted(await self._redis.smembers(self._keys.sales_streams))
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.zrangebyscore(self._keys.paid_now(stream_id), f"({now_ms}", "+inf")
            paid: list[list[str]] = await pipe.execute()
        return {stream_id: ids for stream_id, ids in zip(stream_ids, paid, strict=True) if ids}

    async def _one(self, session_id: str | None) -> PaymentSession | None:
        if not session_id:
            return None
        return session_from_fields(await self._redis.hgetall(self._keys.session(session_id)))

    # --- writes ----------------------------------------------------------------

    @bounded
    async def insert_pending(self, candidate: PaymentSession, now_ms: int
                             ) -> tuple[PaymentSession, bool]:
        async def insert(pipe: Pipeline) -> tuple[PaymentSession, bool]:
            # The pointer names the newest active session; a renewal's continued
            # window is the only other one that can be active (rule 1's exception).
            pointer, head = await watch_active_pointer(pipe, self._keys, candidate.user_id,
                                                       candidate.stream_id)
            found = [head] if head is not None else []
            if head is not None and head.renews:
                renewed = await watch_session(pipe, self._keys, head.renews)
                if renewed is not None and renewed.status in ACTIVE_STATUSES:
                    found.append(renewed)
            decision = decide_new_session(candidate, found, now_ms)
            if not decision.inserted:
                return decision.session, False
            pipe.multi()
            for expired in decision.expired:
                pointer = queue_session(pipe, self._keys, expired, pointer)
            queue_session(pipe, self._keys, decision.session, pointer)
            queue_qr(pipe, self._keys, decision.session)
            return decision.session, True

        return await self._client.transaction(insert)

    @bounded
    async def apply_notification(self, notification: Notification,
                                 decide: Callable[[PaymentContext], PaymentDecision]
                                 ) -> PaymentDecision:
        note = notification
        event_key = self._keys.event(note.provider, note.event_id)
        replay_key = (self._keys.replay(note.replay_key) if note.replay_key is not None
                      else None)
        trx_key = self._keys.trx(note.provider, note.trx_id)
        own_keys = [trx_key, event_key] + ([replay_key] if replay_key else [])

        async def apply(pipe: Pipeline) -> PaymentDecision:
            # Read everything in one round trip, WATCH all it touched, read again: if
            # nothing moved in between, the WATCH covers every read (EXEC fails on any
            # change after it, whichever connection read the keys).
            first, _ = await self._notification_context(trx_key, event_key, replay_key)
            await pipe.watch(*own_keys, *first.derived_keys)
            context, number = await self._notification_context(
                trx_key, event_key, replay_key, draw_number=True)
            if context != first:
                raise WatchError("changed between the reads")
            if context.replayed:
                return PaymentDecision(False, NotificationReason.REPLAYED, None)
            # The viewer's other sessions for the stream whose stored status is active:
            # the pointer's, and the windows renewed (rule 1 and its exception).
            session = context.session
            others = tuple(other for other in context.related if session is not None
                           and (other.user_id, other.stream_id)
                           == (session.user_id, session.stream_id)
                           and other.status in ACTIVE_STATUSES)
            decision = decide(PaymentContext(note, session, context.event_seen, others))
            pointer = context.pointer
            pipe.multi()
            # In the decision's order: what it ends comes before what it makes active.
            for changed in decision.writes:
                pointer = queue_session(pipe, self._keys, changed, pointer)
            for changed in decision.changed:
                if changed.status == SessionStatus.PAID and changed.paid_at_ms is not None:
                    queue_ticket(pipe, self._keys, changed)
            queue_entry(pipe, self._keys, number, note, decision,
                        session.stream_id if session is not None else None)
            return decision

        async with self._one_at_a_time(trx_key):
            return await self._client.transaction(apply)

    async def _notification_context(self, trx_key: str, event_key: str,
                                    replay_key: str | None, *, draw_number: bool = False
                                    ) -> tuple[_NotificationContext, int]:
        replayed, seen, session_id, session, active_key, pointer, related, number = (
            await self._read_notification_context(
                keys=[trx_key, event_key, self._keys.notification_ids],
                args=[self._keys.prefix, replay_key or "", "number" if draw_number else ""]))
        others = tuple(found for found in (session_from_fields(pairs(fields))
                                           for fields in related) if found is not None)
        return _NotificationContext(
            replayed=bool(replayed), event_seen=bool(seen),
            session=session_from_fields(pairs(session)), pointer=pointer or None,
            related=others,
            derived_keys=tuple(key for key in (
                self._keys.session(session_id) if session_id else "", active_key,
                *(self._keys.session(other.session_id) for other in others),
            ) if key)), int(number)

    @bounded
    async def expire_due(self, now_ms: int, limit: int) -> list[PaymentSession]:
        expired: list[PaymentSession] = []
        # Another instance's sweeper may be expiring the same sessions: those it wins
        # leave the due set, so list again until `limit` are ours or none are due. A
        # short batch then means "drained", as the caller assumes.
        listed_before: list[str] = []
        while len(expired) < limit:
            ids = await self._redis.zrangebyscore(self._keys.due, "-inf", now_ms, start=0,
                                                  num=limit - len(expired))
            if not ids or ids == listed_before:  # nothing due, or nothing moving
                break
            expired += await self._expire_listed(ids, now_ms)
            listed_before = ids
        return expired

    async def _expire_listed(self, ids: list[str], now_ms: int) -> list[PaymentSession]:
        expired: list[PaymentSession] = []
        for session_id in ids:
            async def expire(pipe: Pipeline, session_id: str = session_id
                             ) -> PaymentSession | None:
                session = await watch_session(pipe, self._keys, session_id)
                if session is None or session.status not in ACTIVE_STATUSES:
                    pipe.multi()
                    pipe.zrem(self._keys.due, session_id)  # a leftover entry
                    return None
                _, expired = expire_stale([session], now_ms)
                if not expired:
                    return None  # paid since it was listed: its expiry moved
                pointer, _ = await watch_active_pointer(pipe, self._keys, session.user_id,
                                                        session.stream_id)
                pipe.multi()
                queue_session(pipe, self._keys, expired[0], pointer)
                return expired[0]

            ended = await self._client.transaction(expire)
            if ended is not None:
                expired.append(ended)
        return expired

    @bounded
    async def prune_unpaid(self, expired_before_ms: int, limit: int) -> int:
        ids = await self._redis.zrangebyscore(self._keys.prunable, "-inf",
                                              f"({expired_before_ms}", start=0, num=limit)
        pruned = 0
        for session_id in ids:
            async def prune(pipe: Pipeline, session_id: str = session_id) -> bool:
                session = await watch_session(pipe, self._keys, session_id)
                pipe.multi()
                pipe.zrem(self._keys.prunable, session_id)
                pipe.zrem(self._keys.unpaid, session_id)
                pipe.zrem(self._keys.created, session_id)
                if session is None or session.status != SessionStatus.EXPIRED \
                        or session.paid_at_ms is not None:
                    return False
                pipe.delete(self._keys.session(session_id),
                            self._keys.trx(session.provider, session.trx_id))
                pipe.zrem(self._keys.user_sessions(session.user_id), session_id)
                return True

            pruned += await self._client.transaction(prune)
        return pruned

    @bounded
    async def end_paid_session(self, session_id: str, now_ms: int,
                               reason: str = ENDED_BY_REVOCATION) -> PaymentSession | None:
        async def end(pipe: Pipeline) -> PaymentSession | None:
            session = await watch_session(pipe, self._keys, session_id)
            ended = (decide_revocation(session, now_ms, reason) if session is not None
                     else None)
            if ended is None:
                return None
            pointer, _ = await watch_active_pointer(pipe, self._keys, ended.user_id,
                                                    ended.stream_id)
            pipe.multi()
            queue_session(pipe, self._keys, ended, pointer)
            return ended

        return await self._client.transaction(end)
