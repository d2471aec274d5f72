"""Redis store: for several gateway instances sharing one store (SPEC, "Stores").

- Atomic: every write is an optimistic transaction (WATCH, read, MULTI/EXEC, retried
  when a watched key changed). Rule 1 is held by one pointer key per viewer and stream
  that names their active session; every transaction that creates or ends an active
  session watches that key, so two instances racing for one viewer cannot both win.
  A notification's reads are one Lua script (a round trip costs ~0.25 ms through
  redis-py, and there would be a dozen); the script follows keys it derives, so this
  store needs one Redis server or a primary with replicas, not Redis Cluster.
- Status changes are published on a channel (`changes()`), so a viewer's WebSocket held
  by one instance hears a payment that another instance received, and every instance's
  HLS gate learns of a revocation.
- Durable only as far as the Redis server is configured to be: payments need
  `appendonly yes` (with `appendfsync always` for the same guarantee as SQLite's
  `synchronous=FULL`). `open()` logs a warning when the server keeps nothing on disk.

Layout, under a key prefix (default `gateway:`): one hash per session, per-trx and
per-viewer-and-stream pointers, sorted sets for the sweeper's due, prunable and
ended-early queries, and the notification ledger as hashes indexed newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from gateway.device_model import DeviceGrant, DevicePlace, PlaceClaim, decide_claim
from gateway.errors import StoreUnavailable
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
from gateway.logs import log_event
from gateway.model import (
    ACTIVE_STATUSES,
    Notification,
    NotificationReason,
    PaymentContext,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
    decide_new_session,
    decide_revocation,
    expire_stale,
    tokens_live_until_ms,
)
from gateway.store.base import SessionStore, StoredNotification

log = logging.getLogger("gateway.store.redis")

T = TypeVar("T")
P = ParamSpec("P")
# redis-py's annotations cannot say that `decode_responses=True` makes every reply a str
# (they are unions of bytes, str and awaitables): the client and its pipelines are typed
# loosely here, and every reply is converted where it is read.
Pipeline = Any
DEFAULT_KEY_PREFIX = "gateway:"
_PAYMENTS_SCAN = 20_000
DEFAULT_TIMEOUT_S = 5.0
# Connections per instance. Beyond them a request waits for one (up to the store's
# timeout) instead of failing: a burst queues, it does not turn into 500s.
POOL_CONNECTIONS = 64


def _bounded(method: Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]]
             ) -> Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]]:
    """A store call that ends within the store's timeout, and whose failure is the
    domain's `StoreUnavailable` (a 503 with Retry-After), never redis-py's exceptions:
    Redis killed, paused (CLIENT PAUSE, DEBUG SLEEP), loading its data set, or a
    transaction that kept losing to other instances until the deadline."""

    async def bounded(self: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await method(self, *args, **kwargs)
        except (RedisError, OSError, TimeoutError) as exc:
            log_event(log, "store_unavailable", level=logging.WARNING,
                      operation=method.__name__, error=type(exc).__name__)
            raise StoreUnavailable() from None

    return bounded


def _part(value: str) -> str:
    """A key component that cannot contain the separator, whatever the viewer id is."""
    return quote(value, safe="")


def _session_fields(session: PaymentSession) -> dict[str, str]:
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
    }


def _session(fields: dict[str, str]) -> PaymentSession | None:
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
    )


def _optional_int(text: str) -> int | None:
    return int(text) if text else None


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.due = prefix + "due"  # active sessions by expires_at_ms
        self.prunable = prefix + "unpaid-expired"  # never paid, expired, by expires_at_ms
        # Paid and over, by the end of the paid window (when their tokens expire).
        self.ended = prefix + "paid-expired"
        self.created = prefix + "by-creation"  # every session, by created_at_ms
        self.unpaid = prefix + "unpaid"  # never paid (pending or expired), by created_at_ms
        self.notification_ids = prefix + "notification-seq"
        self.notifications = prefix + "notifications"  # ids by id: newest is highest
        self.changes = prefix + "session-changes"
        # The operator's console (gateway/ledger.py).
        self.sales_streams = prefix + "sales-streams"  # every stream with counters
        self.console_indexed = prefix + "console-indexed"  # set once the above are whole
        self.ledger_tagged = prefix + "ledger-tagged"  # set once every entry is tagged

    def sales(self, stream_id: str) -> str:
        """Hourly counters of one stream: fields q:<hour_ms>, t:<hour_ms>, a:<hour_ms>."""
        return f"{self.prefix}sales:{_part(stream_id)}"

    def paid_now(self, stream_id: str) -> str:
        return f"{self.prefix}paid-now:{_part(stream_id)}"  # by expires_at_ms

    def user_sessions(self, user_id: str) -> str:
        return f"{self.prefix}user-sessions:{_part(user_id)}"  # by created_at_ms

    def ledger_tag(self, tag: str) -> str:
        """The entries listed under one tag (gateway/ledger.py:ledger_tags), by
        _ledger_score. Tags are URL-encoded: they hold no separator."""
        return f"{self.prefix}ledger-tag:{tag}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def trx(self, provider: str, trx_id: str) -> str:
        return f"{self.prefix}trx:{_part(provider)}:{_part(trx_id)}"

    def active(self, user_id: str, stream_id: str) -> str:
        return f"{self.prefix}active:{_part(user_id)}:{_part(stream_id)}"

    def user_active(self, user_id: str) -> str:
        return f"{self.prefix}user-active:{_part(user_id)}"

    def user_paid(self, user_id: str) -> str:
        """Every session the viewer ever paid, by paid_at_ms ("Tiket saya")."""
        return f"{self.prefix}user-paid:{_part(user_id)}"

    def notification(self, number: int) -> str:
        return f"{self.prefix}notification:{number}"

    def notifications_by_trx(self, trx_id: str) -> str:
        return f"{self.prefix}notifications-by-trx:{_part(trx_id)}"

    def replay(self, replay_key: str) -> str:
        return f"{self.prefix}replay:{_part(replay_key)}"

    def event(self, provider: str, event_id: str) -> str:
        return f"{self.prefix}event:{_part(provider)}:{_part(event_id)}"

    def grant(self, grant_id: str) -> str:
        return f"{self.prefix}grant:{_part(grant_id)}"

    def device_grant(self, session_id: str, device: str) -> str:
        return f"{self.prefix}device-grant:{_part(session_id)}:{_part(device)}"

    def session_grants(self, session_id: str) -> str:
        return f"{self.prefix}session-grants:{_part(session_id)}"

    def places(self, session_id: str) -> str:
        return f"{self.prefix}places:{_part(session_id)}"


# Making and ending a grant are small scripts that decide nothing: each is one atomic
# step on keys the grant's own hash names (`pointer_key`, `places_key`), in one round
# trip. Claiming a place is the model's decision (`decide_claim`), so it is a WATCH
# transaction instead.
# KEYS: the device's grant pointer, the new grant's hash, the session's grant index, the
# session's places. ARGV: new grant id, session id, device, now, the prefix of grant
# hashes. Returns the grant's fields and the session's places.
_GRANT_FOR_DEVICE = """
local places = redis.call('HGETALL', KEYS[4])
local current = redis.call('GET', KEYS[1])
if current then
  local fields = redis.call('HGETALL', ARGV[5] .. current)
  if #fields > 0 then return {fields, places} end
end
redis.call('HSET', KEYS[2], 'grant_id', ARGV[1], 'session_id', ARGV[2], 'device', ARGV[3],
           'created_at_ms', ARGV[4], 'ended_at_ms', '', 'pointer_key', KEYS[1],
           'places_key', KEYS[4])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return {redis.call('HGETALL', KEYS[2]), places}
"""

# KEYS: the grant's hash. ARGV: now.
_END_GRANT = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return fields end
local grant = {}
for i = 1, #fields, 2 do grant[fields[i]] = fields[i + 1] end
if grant['ended_at_ms'] == '' then
  redis.call('HSET', KEYS[1], 'ended_at_ms', ARGV[1])
  if redis.call('GET', grant['pointer_key']) == grant['grant_id'] then
    redis.call('DEL', grant['pointer_key'])
  end
  local mine = grant['grant_id'] .. '|'
  for _, member in ipairs(redis.call('HKEYS', grant['places_key'])) do
    if member:sub(1, #mine) == mine then redis.call('HDEL', grant['places_key'], member) end
  end
end
return redis.call('HGETALL', KEYS[1])
"""

# A place is a field of the session's places hash: "<grant id>|<address>" ->
# "<first seen ms>:<last seen ms>".
# The places of a purchase nobody plays any more go by themselves, well after they count.
_PLACES_TTL_MS = 10 * 60 * 1000


def _grant(flat: list[str]) -> DeviceGrant | None:
    fields = _pairs(flat)
    if not fields:
        return None
    return DeviceGrant(
        grant_id=fields["grant_id"], session_id=fields["session_id"],
        device=fields["device"], created_at_ms=int(fields["created_at_ms"]),
        ended_at_ms=int(fields["ended_at_ms"]) if fields["ended_at_ms"] else None)


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


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStore(SessionStore):
    shared = True

    def __init__(self, client: aioredis.Redis, key_prefix: str = DEFAULT_KEY_PREFIX, *,
                 feed_client: aioredis.Redis | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis: Any = client
        # The change feed's subscription idles for as long as nothing changes: it gets a
        # client of its own, without the read timeout every other call has.
        self._feed: Any = feed_client or client
        self.timeout_s = timeout_s
        self.key_prefix = key_prefix
        self._keys = _Keys(key_prefix)
        # Lets an instance skip its own changes when they come back from the channel.
        self.instance_id = uuid.uuid4().hex
        self._read_notification_context = client.register_script(_READ_NOTIFICATION_CONTEXT)
        self._grant_for_device = client.register_script(_GRANT_FOR_DEVICE)
        self._end_grant = client.register_script(_END_GRANT)

    @classmethod
    async def open(cls, url: str, key_prefix: str = DEFAULT_KEY_PREFIX,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> RedisStore:
        # Bounded connects, reads and waits for a pooled connection.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, health_check_interval=30, max_connections=POOL_CONNECTIONS,
            timeout=timeout_s, socket_connect_timeout=min(timeout_s, 5), socket_timeout=timeout_s)
        client = aioredis.Redis.from_pool(pool)
        feed = aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                       socket_connect_timeout=5)
        try:
            await client.ping()
        except RedisError as exc:
            await client.aclose()
            await feed.aclose()
            where = client.connection_pool.connection_kwargs
            # One line an operator can act on; never the URL, which may hold a password.
            raise ConnectionError(f"GATEWAY_STORE: no Redis at {where.get('host', '?')}:"
                                  f"{where.get('port', '?')}: {exc}") from None
        store = cls(client, key_prefix, feed_client=feed, timeout_s=timeout_s)
        await store._warn_if_not_durable()
        await store._index_for_console()
        await store._tag_the_ledger()
        return store

    async def _index_for_console(self) -> None:
        """Sessions and notifications stored by a version without the console's indexes
        and counters get them, once: the first instance to open the store claims the job
        (SET NX), so nothing is counted twice."""
        keys = self._keys
        if not await self._redis.set(keys.console_indexed, "1", nx=True):
            return
        # Every stored session is in one of these sets, every notification in the last:
        # a new store (or a new prefix on a shared server) has nothing to index, and
        # must not scan the server's other keys to find that out.
        if not await self._redis.exists(keys.due, keys.prunable, keys.ended,
                                        keys.notifications):
            return
        total = await self._redis.zcard(keys.notifications)
        for start in range(0, total, 1000):
            numbers = [int(n) for n in await self._redis.zrange(keys.notifications, start,
                                                                 start + 999)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for number in numbers:
                    pipe.hgetall(keys.notification(number))
                rows: list[dict[str, str]] = await pipe.execute()
            sessions = {session.session_id: session for session in await self._load_many(
                {row["session_id"] for row in rows if row.get("session_id")})}
            async with self._redis.pipeline(transaction=False) as pipe:
                for number, row in zip(numbers, rows, strict=True):
                    if not row:
                        continue
                    session = sessions.get(row["session_id"])
                    stream_id = session.stream_id if session is not None else ""
                    pipe.hset(keys.notification(number), "stream_id", stream_id)
                await pipe.execute()
        batch: list[str] = []
        async for key in self._redis.scan_iter(match=f"{keys.prefix}session:*", count=1000):
            batch.append(key.removeprefix(f"{keys.prefix}session:"))
            if len(batch) >= 1000:
                await self._index_sessions(batch)
                batch = []
        await self._index_sessions(batch)

    async def _tag_the_ledger(self) -> None:
        """Notifications stored by a version without the ledger's tags get them, once,
        as the model gives them (claimed with SET NX like `_index_for_console`)."""
        keys = self._keys
        if not await self._redis.set(keys.ledger_tagged, "1", nx=True):
            return
        total = await self._redis.zcard(keys.notifications)
        for start in range(0, total, 1000):
            numbers = [int(n) for n in await self._redis.zrange(keys.notifications, start,
                                                                 start + 999)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in await self._ledger_entries(numbers):
                    self._queue_tags(pipe, entry, ledger_tags(entry))
                await pipe.execute()

    async def _index_sessions(self, session_ids: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for session in await self._load_many(session_ids):
                pipe.zadd(self._keys.user_sessions(session.user_id),
                          {session.session_id: session.created_at_ms})
                if session.status == SessionStatus.PAID:
                    pipe.zadd(self._keys.paid_now(session.stream_id),
                              {session.session_id: session.expires_at_ms})
                self._queue_count(pipe, session.stream_id, "q", session.created_at_ms, 1)
                if session.paid_at_ms is not None:
                    self._queue_count(pipe, session.stream_id, "t", session.paid_at_ms, 1)
                    self._queue_count(pipe, session.stream_id, "a", session.paid_at_ms,
                                      session.amount)
            await pipe.execute()

    async def _warn_if_not_durable(self) -> None:
        try:
            config = await self._redis.config_get("appendonly")
        except Exception:  # managed Redis often forbids CONFIG: nothing to tell then
            return
        if config.get("appendonly") != "yes":
            log.warning("the Redis server has appendonly off: a restart of Redis loses "
                        "payments stored since its last snapshot")

    @_bounded
    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
        if self._feed is not self._redis:
            await self._feed.aclose()

    @_bounded
    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        # One counter per bucket and window, shared by every instance.
        key = f"{self._keys.prefix}rate:{_part(bucket)}:{now_ms // (window_s * 1000)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s + 1)
            count, _ = await pipe.execute()
        return int(count)

    # --- reads -----------------------------------------------------------------

    async def _load(self, session_id: str | None) -> PaymentSession | None:
        if not session_id:
            return None
        return _session(await self._redis.hgetall(self._keys.session(session_id)))

    async def _load_many(self, session_ids: Iterable[str]) -> list[PaymentSession]:
        ids = list(session_ids)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._keys.session(session_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return [session for session in map(_session, rows) if session is not None]

    @_bounded
    async def get(self, session_id: str) -> PaymentSession | None:
        return await self._load(session_id)

    @_bounded
    async def get_many(self, session_ids: list[str]) -> list[PaymentSession]:
        return await self._load_many(session_ids)

    @_bounded
    async def get_by_trx(self, provider: str, trx_id: str) -> PaymentSession | None:
        return await self._load(await self._redis.get(self._keys.trx(provider, trx_id)))

    @_bounded
    async def active_for_stream(
        self, user_id: str, stream_id: str, now_ms: int
    ) -> list[PaymentSession]:
        head = await self._load(await self._redis.get(self._keys.active(user_id, stream_id)))
        found = [head] if head is not None else []
        if head is not None and head.renews:
            renewed = await self._load(head.renews)
            if renewed is not None:
                found.append(renewed)
        return sorted((session for session in found if session.is_active(now_ms)),
                      key=lambda session: (session.created_at_ms, session.session_id))

    @_bounded
    async def list_paid(self, user_id: str, limit: int) -> list[PaymentSession]:
        ids = await self._redis.zrevrange(self._keys.user_paid(user_id), 0, limit - 1)
        return await self._load_many(ids)

    @_bounded
    async def list_active(self, user_id: str, now_ms: int) -> list[PaymentSession]:
        ids = await self._redis.smembers(self._keys.user_active(user_id))
        sessions = [session for session in await self._load_many(ids)
                    if session.is_active(now_ms)]
        return sorted(sessions, key=lambda session: (session.created_at_ms, session.session_id))

    @_bounded
    async def ended_early(self, now_ms: int) -> list[PaymentSession]:
        ids = await self._redis.zrangebyscore(self._keys.ended, f"({now_ms}", "+inf")
        return [session for session in await self._load_many(ids)
                if session.status == SessionStatus.EXPIRED and session.paid_at_ms is not None]

    @_bounded
    async def notifications(self, trx_id: str | None = None,
                            limit: int = 100) -> list[StoredNotification]:
        if trx_id is None:
            numbers = await self._redis.zrevrange(self._keys.notifications, 0, limit - 1)
        else:
            numbers = await self._redis.lrange(self._keys.notifications_by_trx(trx_id), 0,
                                               limit - 1)
        if not numbers:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hgetall(self._keys.notification(int(number)))
            rows: list[dict[str, str]] = await pipe.execute()
        return [_stored_notification(row) for row in rows if row]

    @_bounded
    async def unpaid_created_between(self, created_after_ms: int, created_before_ms: int,
                                     limit: int) -> list[PaymentSession]:
        ids = await self._redis.zrangebyscore(self._keys.unpaid, f"({created_after_ms}",
                                              created_before_ms, start=0, num=limit)
        return [session for session in await self._load_many(ids)
                if session.paid_at_ms is None]

    @_bounded
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
            for session in await self._load_many(ids):
                if (status is None or session.status == status) and \
                        (stream_id is None or session.stream_id == stream_id):
                    found.append(session)
            start += page
        found.sort(key=lambda session: (-session.created_at_ms, session.session_id))
        return found[:limit]

    # --- writes ----------------------------------------------------------------

    async def _transaction(self, watch: list[str],
                           body: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Run `body` under WATCH until it commits. `body` WATCHes what it reads (the
        pipeline runs commands at once while watching, and queues them otherwise), then
        calls `pipe.multi()` and queues its writes, or returns without it to commit
        nothing."""
        # A WATCH conflict means another writer committed: retrying is progress. Retried
        # until the caller's deadline (`_bounded`), with a growing random pause so that
        # instances racing on one key stop colliding in step.
        async with self._redis.pipeline(transaction=True) as pipe:
            conflicts = 0
            while True:
                try:
                    if watch:
                        await pipe.watch(*watch)
                    result = await body(pipe)
                    if pipe.explicit_transaction:
                        await pipe.execute()
                    return result  # leaving the pipeline resets it, which unwatches
                except WatchError:
                    await pipe.reset()
                    conflicts += 1
                    if conflicts > 3:
                        await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * conflicts)))

    async def _read_session(self, pipe: Pipeline, session_id: str | None,
                            ) -> PaymentSession | None:
        if not session_id:
            return None
        key = self._keys.session(session_id)
        await pipe.watch(key)
        return _session(await pipe.hgetall(key))

    def _queue_write(self, pipe: Pipeline, session: PaymentSession,
                     pointer: str | None) -> str | None:
        """Queue the writes that store `session` as it now is, with every index kept
        in step. `pointer` is what the viewer's active pointer holds so far in this
        transaction; the return value is what it holds after."""
        keys = self._keys
        session_id = session.session_id
        active_key = keys.active(session.user_id, session.stream_id)
        # The pointer's key name rides along, for the notification script to follow.
        pipe.hset(keys.session(session_id),
                  mapping={**_session_fields(session), "active_key": active_key})
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
            # A renewal that ends hands the pointer back to the window it continued,
            # which may still be paid and running.
            if session.renews:
                pipe.set(active_key, session.renews)
                return session.renews
            pipe.delete(active_key)
            return None
        return pointer

    async def _active_pointer(self, pipe: Pipeline, user_id: str, stream_id: str,
                              ) -> tuple[str | None, PaymentSession | None]:
        """Watch the viewer's active pointer; return it and the session it names."""
        active_key = self._keys.active(user_id, stream_id)
        await pipe.watch(active_key)
        pointer: str | None = await pipe.get(active_key)
        return pointer, await self._read_session(pipe, pointer)

    async def _notification_context(self, trx_key: str, event_key: str, replay_key: str | None,
                                    *, draw_number: bool = False
                                    ) -> tuple[_NotificationContext, int]:
        replayed, seen, session_id, session, active_key, pointer, related, number = (
            await self._read_notification_context(
                keys=[trx_key, event_key, self._keys.notification_ids],
                args=[self._keys.prefix, replay_key or "", "number" if draw_number else ""]))
        others = tuple(found for found in (_session(_pairs(fields)) for fields in related)
                       if found is not None)
        return _NotificationContext(
            replayed=bool(replayed), event_seen=bool(seen),
            session=_session(_pairs(session)), pointer=pointer or None,
            related=others,
            derived_keys=tuple(key for key in (
                self._keys.session(session_id) if session_id else "", active_key,
                *(self._keys.session(other.session_id) for other in others),
            ) if key)), int(number)

    @_bounded
    async def insert_pending(
        self, candidate: PaymentSession, now_ms: int
    ) -> tuple[PaymentSession, bool]:
        async def insert(pipe: Pipeline) -> tuple[PaymentSession, bool]:
            # The pointer names the newest active session; a renewal's continued
            # window is the only other one that can be active (rule 1's exception).
            pointer, head = await self._active_pointer(pipe, candidate.user_id,
                                                       candidate.stream_id)
            found = [head] if head is not None else []
            if head is not None and head.renews:
                renewed = await self._read_session(pipe, head.renews)
                if renewed is not None and renewed.status in ACTIVE_STATUSES:
                    found.append(renewed)
            decision = decide_new_session(candidate, found, now_ms)
            if not decision.inserted:
                return decision.session, False
            pipe.multi()
            for expired in decision.expired:
                pointer = self._queue_write(pipe, expired, pointer)
            self._queue_write(pipe, decision.session, pointer)
            self._queue_count(pipe, decision.session.stream_id, "q",
                              decision.session.created_at_ms, 1)
            return decision.session, True

        return await self._transaction([], insert)

    @_bounded
    async def apply_notification(
        self,
        notification: Notification,
        decide: Callable[[PaymentContext], PaymentDecision],
    ) -> PaymentDecision:
        note = notification
        keys = self._keys
        event_key = keys.event(note.provider, note.event_id)
        replay_key = keys.replay(note.replay_key) if note.replay_key is not None else None
        trx_key = keys.trx(note.provider, note.trx_id)

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
            decision = decide(PaymentContext(note, context.session, context.event_seen,
                                             others))
            pointer = context.pointer
            pipe.multi()
            # In the decision's order: what it ends comes before what it makes active.
            for changed in decision.writes:
                pointer = self._queue_write(pipe, changed, pointer)
            for changed in decision.changed:
                if changed.status == SessionStatus.PAID and changed.paid_at_ms is not None:
                    self._queue_count(pipe, changed.stream_id, "t", changed.paid_at_ms, 1)
                    self._queue_count(pipe, changed.stream_id, "a", changed.paid_at_ms,
                                      changed.amount)
            stream_id = context.session.stream_id if context.session is not None else None
            pipe.hset(keys.notification(number), mapping={
                **_notification_fields(note, decision), "stream_id": stream_id or ""})
            pipe.zadd(keys.notifications, {str(number): number})
            entry = LedgerEntry(number, note, decision.applied, decision.reason.value,
                                decision.session_id, stream_id)
            self._queue_tags(pipe, entry, ledger_tags(entry))
            pipe.lpush(keys.notifications_by_trx(note.trx_id), str(number))
            pipe.set(event_key, "1")
            if replay_key is not None:
                pipe.set(replay_key, str(number))
            return decision

        own_keys = [trx_key, event_key] + ([replay_key] if replay_key else [])
        return await self._transaction([], apply)

    @_bounded
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
                session = await self._read_session(pipe, session_id)
                if session is None or session.status not in ACTIVE_STATUSES:
                    pipe.multi()
                    pipe.zrem(self._keys.due, session_id)  # a leftover entry
                    return None
                _, expired = expire_stale([session], now_ms)
                if not expired:
                    return None  # paid since it was listed: its expiry moved
                pointer, _ = await self._active_pointer(pipe, session.user_id,
                                                        session.stream_id)
                pipe.multi()
                self._queue_write(pipe, expired[0], pointer)
                return expired[0]

            ended = await self._transaction([], expire)
            if ended is not None:
                expired.append(ended)
        return expired

    @_bounded
    async def prune_unpaid(self, expired_before_ms: int, limit: int) -> int:
        ids = await self._redis.zrangebyscore(self._keys.prunable, "-inf",
                                              f"({expired_before_ms}", start=0, num=limit)
        pruned = 0
        for session_id in ids:
            async def prune(pipe: Pipeline, session_id: str = session_id) -> bool:
                session = await self._read_session(pipe, session_id)
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

            pruned += await self._transaction([], prune)
        return pruned

    @_bounded
    async def end_paid_session(self, session_id: str, now_ms: int) -> PaymentSession | None:
        async def end(pipe: Pipeline) -> PaymentSession | None:
            session = await self._read_session(pipe, session_id)
            ended = decide_revocation(session, now_ms) if session is not None else None
            if ended is None:
                return None
            pointer, _ = await self._active_pointer(pipe, ended.user_id, ended.stream_id)
            pipe.multi()
            self._queue_write(pipe, ended, pointer)
            return ended

        return await self._transaction([], end)

    def _queue_count(self, pipe: Pipeline, stream_id: str, kind: str, at_ms: int,
                     amount: int) -> None:
        pipe.hincrby(self._keys.sales(stream_id), f"{kind}:{hour_start(at_ms)}", amount)
        pipe.sadd(self._keys.sales_streams, stream_id)

    def _queue_tags(self, pipe: Pipeline, entry: LedgerEntry, tags: Iterable[str]) -> None:
        score = _ledger_score(*entry.cursor)
        for tag in tags:
            pipe.zadd(self._keys.ledger_tag(tag), {str(entry.entry_id): score})

    # --- the operator's console ----------------------------------------------------

    async def ledger(self, query: LedgerQuery, limit: int) -> list[LedgerEntry]:
        scan = query.scan()
        source = self._keys.ledger_tag(scan.tag)
        high = "+inf" if scan.before is None else f"({_ledger_score(*scan.before)}"
        low = "-inf" if scan.since is None else str(_ledger_score(*scan.since))
        found: list[LedgerEntry] = []
        while len(found) < limit:
            listed: list[tuple[str, float]] = await self._redis.zrevrangebyscore(
                source, high, low, start=0, num=limit, withscores=True)
            entries = await self._ledger_entries([int(member) for member, _ in listed])
            found += [entry for entry in entries if query.matches(entry)]
            if len(listed) < limit:
                break
            high = f"({int(listed[-1][1])}"
        return found[:limit]

    async def _ledger_entries(self, numbers: list[int]) -> list[LedgerEntry]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hgetall(self._keys.notification(number))
            rows: list[dict[str, str]] = await pipe.execute()
        return [_ledger_entry(number, row) for number, row in zip(numbers, rows, strict=True)
                if row]

    async def ledger_entry(self, entry_id: int) -> LedgerEntry | None:
        found = await self._ledger_entries([entry_id])
        return found[0] if found else None

    async def settle(self, entry_id: int, settlement: Settlement) -> LedgerEntry | None:
        key = self._keys.notification(entry_id)

        async def settle(pipe: Pipeline) -> LedgerEntry | None:
            await pipe.watch(key)
            row = await pipe.hgetall(key)
            decision = decide_settlement(_ledger_entry(entry_id, row), settlement) \
                if row else None
            if decision is None:
                return None
            pipe.multi()
            pipe.hset(key, mapping={"settled_at_ms": str(settlement.settled_at_ms),
                                    "settled_by": settlement.settled_by,
                                    "settled_note": settlement.note})
            for tag in decision.untag:
                pipe.zrem(self._keys.ledger_tag(tag), str(entry_id))
            self._queue_tags(pipe, decision.entry, decision.tag)
            return decision.entry

        return await self._transaction([], settle)

    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        hours = list(range(hour_start(from_ms) + (HOUR_MS if from_ms % HOUR_MS else 0),
                           to_ms, HOUR_MS))
        stream_ids = sorted(await self._redis.smembers(self._keys.sales_streams))
        if not hours or not stream_ids:
            return []
        fields = [f"{kind}:{hour}" for hour in hours for kind in ("q", "t", "a")]
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hmget(self._keys.sales(stream_id), fields)
            counters: list[list[str | None]] = await pipe.execute()
        buckets: list[SalesBucket] = []
        for index, hour in enumerate(hours):
            for stream_id, values in zip(stream_ids, counters, strict=True):
                qrs, sold, money = (int(value or 0) for value in values[3 * index:3 * index + 3])
                if qrs or sold or money:
                    buckets.append(SalesBucket(stream_id, hour, qrs, sold, money))
        return buckets

    async def paid_now(self, now_ms: int) -> dict[str, int]:
        stream_ids = sorted(await self._redis.smembers(self._keys.sales_streams))
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.zcount(self._keys.paid_now(stream_id), f"({now_ms}", "+inf")
            counts: list[int] = await pipe.execute()
        return {stream_id: count for stream_id, count in zip(stream_ids, counts, strict=True)
                if count}

    async def playing_now(self, now_ms: int, since_ms: int) -> dict[str, int]:
        """The places of every session paid and not over, stream by stream: one read
        of the paid index, then one pipelined read of their places."""
        stream_ids = sorted(await self._redis.smembers(self._keys.sales_streams))
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.zrangebyscore(self._keys.paid_now(stream_id), f"({now_ms}", "+inf")
            paid: list[list[str]] = await pipe.execute()
        owners = [(stream_id, session_id)
                  for stream_id, ids in zip(stream_ids, paid, strict=True) for session_id in ids]
        if not owners:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, session_id in owners:
                pipe.hgetall(self._keys.places(session_id))
            held: list[dict[str, str]] = await pipe.execute()
        counts: dict[str, int] = {}
        for (stream_id, _), places in zip(owners, held, strict=True):
            playing = len(_playing(places, since_ms))
            if playing:
                counts[stream_id] = counts.get(stream_id, 0) + playing
        return counts

    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        ids = await self._redis.zrevrange(self._keys.user_sessions(user_id), 0, limit - 1)
        sessions = await self._load_many(ids)
        return sorted(sessions, key=lambda session: (session.created_at_ms,
                                                     session.session_id), reverse=True)

    # --- playback grants and places ----------------------------------------------

    @_bounded
    async def grant_for_device(self, session_id: str, device: str, now_ms: int,
                               new_grant_id: str, playing_since_ms: int
                               ) -> tuple[DeviceGrant, list[DevicePlace]]:
        keys = self._keys
        fields, places = await self._grant_for_device(
            keys=[keys.device_grant(session_id, device), keys.grant(new_grant_id),
                  keys.session_grants(session_id), keys.places(session_id)],
            args=[new_grant_id, session_id, device, now_ms, keys.grant("")])
        grant = _grant(fields)
        assert grant is not None
        return grant, _playing(_pairs(places), playing_since_ms)

    @_bounded
    async def get_grant(self, grant_id: str) -> DeviceGrant | None:
        fields = await self._redis.hgetall(self._keys.grant(grant_id))
        return _grant([item for pair in fields.items() for item in pair])

    @_bounded
    async def grants(self, session_id: str) -> list[DeviceGrant]:
        ids = await self._redis.zrange(self._keys.session_grants(session_id), 0, -1)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for grant_id in ids:
                pipe.hgetall(self._keys.grant(grant_id))
            rows: list[dict[str, str]] = await pipe.execute()
        found = [_grant([item for pair in row.items() for item in pair]) for row in rows]
        return sorted((grant for grant in found if grant is not None),
                      key=lambda grant: (grant.created_at_ms, grant.grant_id))

    @_bounded
    async def end_grant(self, grant_id: str, now_ms: int) -> DeviceGrant | None:
        return _grant(await self._end_grant(keys=[self._keys.grant(grant_id)], args=[now_ms]))

    @_bounded
    async def claim_place(self, session_id: str, grant_id: str, address: str, now_ms: int,
                          since_ms: int, limit: int) -> PlaceClaim:
        places_key, grant_key = self._keys.places(session_id), self._keys.grant(grant_id)

        async def claim(pipe: Pipeline) -> PlaceClaim:
            # Both read in one round trip on another connection: the WATCH, already in
            # place, covers them whichever connection read them.
            async with self._redis.pipeline(transaction=False) as reads:
                reads.hgetall(grant_key)
                reads.hgetall(places_key)
                grant_fields, held = await reads.execute()
            decision = decide_claim(
                session_id, _grant([item for pair in grant_fields.items() for item in pair]),
                _places(held), address, now_ms, since_ms, limit)
            if decision.write is None and not decision.forget:
                return decision.claim
            pipe.multi()
            if decision.forget:
                pipe.hdel(places_key, *(f"{place.grant_id}|{place.address}"
                                        for place in decision.forget))
            if decision.write is not None:
                place = decision.write
                pipe.hset(places_key, f"{place.grant_id}|{place.address}",
                          f"{place.first_seen_ms}:{place.last_seen_ms}")
                pipe.pexpire(places_key, _PLACES_TTL_MS)
            return decision.claim

        return await self._transaction([places_key, grant_key], claim)

    @_bounded
    async def playing(self, session_id: str, since_ms: int) -> list[DevicePlace]:
        return _playing(await self._redis.hgetall(self._keys.places(session_id)), since_ms)

    # --- status changes across instances -----------------------------------------

    @_bounded
    async def publish_change(self, session: PaymentSession) -> None:
        message = {"from": self.instance_id, "session": _session_fields(session)}
        await self._redis.publish(self._keys.changes, json.dumps(message))

    async def changes(self, on_subscribed: Callable[[], Awaitable[None]]
                      ) -> AsyncIterator[PaymentSession]:
        pubsub = self._feed.pubsub(ignore_subscribe_messages=True)
        try:
            async for session in self._listen(pubsub, on_subscribed):
                yield session
        except (RedisError, OSError):
            raise StoreUnavailable() from None  # the caller resubscribes
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _listen(self, pubsub: Any, on_subscribed: Callable[[], Awaitable[None]]
                      ) -> AsyncIterator[PaymentSession]:
        await pubsub.subscribe(self._keys.changes)
        await on_subscribed()
        async for message in pubsub.listen():
            if message.get("type") != "message":
                continue
            try:
                decoded = json.loads(message["data"])
                if decoded.get("from") == self.instance_id:
                    continue
                session = _session(decoded["session"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed session change message")
                continue
            if session is not None:
                yield session


def _places(held: dict[str, str]) -> list[DevicePlace]:
    """The places of a places hash, as stored."""
    places = []
    for field, seen in held.items():
        grant_id, _, address = field.partition("|")
        first, _, last = seen.partition(":")
        places.append(DevicePlace(grant_id, address, int(first), int(last)))
    return places


def _playing(held: dict[str, str], since_ms: int) -> list[DevicePlace]:
    """The places of a places hash last seen after `since_ms`, longest playing first."""
    return sorted((place for place in _places(held) if place.last_seen_ms > since_ms),
                  key=lambda place: (place.first_seen_ms, place.grant_id, place.address))


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


def _ledger_score(received_at_ms: int, number: int) -> int:
    """Time order with the entry number breaking ties, in one exact float (below 2**53
    until the year 2255): the number's last three digits, as no two of the last
    thousand entries arrive in the same millisecond."""
    return received_at_ms * 1000 + number % 1000


def _ledger_entry(number: int, row: dict[str, str]) -> LedgerEntry:
    stored = _stored_notification(row)
    settled_at = row.get("settled_at_ms")
    return LedgerEntry(
        entry_id=number, notification=stored.notification, applied=stored.applied,
        reason=stored.reason, session_id=stored.session_id,
        stream_id=row.get("stream_id") or None,
        settlement=Settlement(int(settled_at), row["settled_by"], row["settled_note"])
        if settled_at else None,
    )


def _stored_notification(row: dict[str, str]) -> StoredNotification:
    return StoredNotification(
        Notification(
            provider=row["provider"], event_id=row["event_id"], trx_id=row["trx_id"],
            amount=int(row["amount"]), reported_status=row["reported_status"],
            paid_at_ms=int(row["paid_at_ms"]) if row["paid_at_ms"] else None,
            received_at_ms=int(row["received_at_ms"]), raw_body=row["raw_body"],
            replay_key=row["replay_key"] or None, fee=int(row.get("fee") or 0),
        ),
        applied=row["applied"] == "1", reason=row["reason"],
        session_id=row["session_id"] or None,
    )
