"""The store, split by what it holds: one protocol per part, each backend a package with
one module per part (`sqlite/`, `redis/`), and `Store`, the parts of one opened store.

Every part passes its contract test on every backend (`tests/store/test_*_contract.py`).
Atomicity is the store's job (rule 1 across requests, processes and instances; the
rules are stated in `gateway/model.py`); what the rows *mean* is not. A part reads rows
as stored, hands them to the model's pure decisions inside its transaction
(`model.decide_new_session`, `decide_payment`, `decide_revocation`, `expire_stale`;
`device_model.decide_claim`; `ledger.decide_settlement`), and writes back what they
return. It never decides on its own that a session is over, which places to forget,
or what a ledger filter means.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from gateway.device_model import DeviceGrant, DevicePlace, PlaceClaim
from gateway.ledger import LedgerEntry, LedgerQuery, SalesBucket, Settlement
from gateway.line_model import LineEntry, LinePlace, Standing
from gateway.model import (
    ENDED_BY_REVOCATION,
    Notification,
    PaymentContext,
    PaymentDecision,
    PaymentSession,
    SessionStatus,
)
from gateway.refund_model import Cancellation, Refund, RefundStatus


class PaymentSessions(Protocol):
    """Payment sessions and the indexes over them. Every write is one transaction:
    rule 1 holds across requests, processes and instances. Paying a session also
    appends its ledger entry and counts the sale in that same transaction, so money
    is never recorded without its effect, nor the reverse."""

    async def get(self, session_id: str) -> PaymentSession | None: ...

    async def get_many(self, session_ids: list[str]) -> list[PaymentSession]:
        """The sessions that exist among `session_ids`, in one trip to the store."""
        ...

    async def get_by_trx(self, provider: str, trx_id: str) -> PaymentSession | None: ...

    async def active_for_stream(self, user_id: str, stream_id: str, now_ms: int
                                ) -> list[PaymentSession]:
        """The viewer's sessions for the stream that are pending or paid and unexpired:
        one, or two when a paid next window waits behind the current one (rule 2's
        exception); oldest first. `model.current_session` picks the one that matters."""
        ...

    async def list_paid(self, user_id: str, limit: int) -> list[PaymentSession]:
        """The viewer's sessions that were ever paid, newest payment first."""
        ...

    async def list_active(self, user_id: str, now_ms: int) -> list[PaymentSession]:
        """The viewer's pending and paid unexpired sessions, oldest first (ties by id, so
        every backend gives the same order)."""
        ...

    async def insert_pending(self, candidate: PaymentSession, now_ms: int
                             ) -> tuple[PaymentSession, bool]:
        """Atomically, as `model.decide_new_session` says over the viewer's active
        sessions for the stream: store `candidate` (its `renews` as the decision sets
        it), count its QR in the sales counters, and return it and True; or return the
        session that is shown again or that refuses, and False. Stale rows (active
        status, past expiry) are written back expired in the same transaction."""
        ...

    async def apply_notification(self, notification: Notification,
                                 decide: Callable[[PaymentContext], PaymentDecision]
                                 ) -> PaymentDecision:
        """Atomically: write the sessions `decide` changed, append the notification to
        the ledger with its outcome, and count the tickets sold. A notification whose
        `replay_key` was seen before changes nothing and comes back with reason
        `replayed`."""
        ...

    async def expire_due(self, now_ms: int, limit: int) -> list[PaymentSession]:
        """Mark up to `limit` active sessions past expiry as expired; return them. Each
        is expired once, whichever instance's sweeper gets there first."""
        ...

    async def prune_unpaid(self, expired_before_ms: int, limit: int) -> int:
        """Delete up to `limit` never-paid sessions that expired before the given time.
        Paid sessions are the sales ledger and are never deleted."""
        ...

    async def end_paid_session(self, session_id: str, now_ms: int,
                               reason: str = ENDED_BY_REVOCATION) -> PaymentSession | None:
        """Atomically end a paid, unexpired session now (refund, revocation), as
        `model.decide_revocation` says. None when the session was not paid and active."""
        ...

    async def ended_early(self, now_ms: int) -> list[PaymentSession]:
        """Expired paid sessions whose access tokens still live at `now_ms` (the end of
        their paid window, `paid_until_ms`, is later): every session whose access was
        ended before its natural expiry and whose tokens could still look valid."""
        ...

    async def unpaid_created_between(self, created_after_ms: int, created_before_ms: int,
                                     limit: int) -> list[PaymentSession]:
        """Never-paid sessions (pending or expired) created in (after, before], oldest
        first: the ones to ask the provider about."""
        ...

    async def payments(self, status: SessionStatus | None, stream_id: str | None,
                       limit: int) -> list[PaymentSession]:
        """Sessions, newest first, optionally of one status and one stream (the status
        as stored: the sweeper may not have marked the latest expiries yet)."""
        ...

    async def sessions_of_user(self, user_id: str, limit: int) -> list[PaymentSession]:
        """The viewer's sessions of any status, newest first (ties by id)."""
        ...

    async def paid_now(self, now_ms: int) -> dict[str, list[str]]:
        """Per stream with any, the ids of the sessions paid and not over at `now_ms`,
        from an index kept on every write (never by reading every session)."""
        ...


class Ledger(Protocol):
    """The ledger of every authentic notification, and the hourly sales counters. Both
    are written by `PaymentSessions` in the transaction of the payment they record;
    here they are read, and settled: settling is the one write, one transaction on
    one entry, and changes no session (bookkeeping, never a payment)."""

    async def notifications(self, trx_id: str | None = None,
                            limit: int = 100) -> list[LedgerEntry]:
        """The ledger in the order it was written, newest first; or one transaction's."""
        ...

    async def ledger(self, query: LedgerQuery, limit: int) -> list[LedgerEntry]:
        """Entries matching `query`, newest first (by received time, then entry id), at
        most `limit`: the index `query.scan()` names, read from its cursor, each entry
        kept if `query.matches` it. A deep page costs what the first does."""
        ...

    async def ledger_entry(self, entry_id: int) -> LedgerEntry | None: ...

    async def settle(self, entry_id: int, settlement: Settlement) -> LedgerEntry | None:
        """Atomically record that a person dealt with an entry, as
        `ledger.decide_settlement` says (its indexes move with it). None when there is
        no such entry, it needs nobody, or it was settled already."""
        ...

    async def count_refund(self, stream_id: str, at_ms: int, amount: int) -> None:
        """A ticket's money given back: counted in the hour it went back, and taken out
        of that hour's takings."""
        ...

    async def sales(self, from_ms: int, to_ms: int) -> list[SalesBucket]:
        """The non-empty hourly sales counters of hours starting in [from_ms, to_ms),
        by hour then stream. QRs count in the hour they were created, tickets in the
        hour they were paid."""
        ...


class DeviceGrants(Protocol):
    """Playback grants per purchase and device, and the places (a grant at a client
    address) they play from (SPEC, Devices). Kept by the store so that instances
    sharing it share one count per purchase; each write is one transaction."""

    async def grant_for_device(self, session_id: str, device: str, now_ms: int,
                               new_grant_id: str, playing_since_ms: int
                               ) -> tuple[DeviceGrant, list[DevicePlace]]:
        """Atomically: the device's current (unended) grant for the session, or a new
        one with `new_grant_id`, so that one device never holds two. With it, in the
        same trip to the store, what `playing(session_id, playing_since_ms)` returns:
        check-access needs both, for every page load."""
        ...

    async def get_grant(self, grant_id: str) -> DeviceGrant | None: ...

    async def grants(self, session_id: str) -> list[DeviceGrant]:
        """Every grant of the session, ended ones too, oldest first (ties by id)."""
        ...

    async def end_grant(self, grant_id: str, now_ms: int) -> DeviceGrant | None:
        """Atomically end a grant and free its places. An ended grant comes back as it
        was ended (idempotent); an unknown one is None. The device's next request for a
        grant gets a new one."""
        ...

    async def claim_place(self, session_id: str, grant_id: str, address: str, now_ms: int,
                          since_ms: int, limit: int) -> PlaceClaim:
        """Atomically: read the grant and the purchase's places, and write what
        `device_model.decide_claim` makes of the gate's report that the grant plays
        from `address`."""
        ...

    async def playing(self, session_id: str, since_ms: int) -> list[DevicePlace]:
        """The session's places seen after `since_ms`, longest playing first."""
        ...

    async def playing_counts(self, session_ids: Collection[str], since_ms: int
                             ) -> dict[str, int]:
        """Of the purchases `session_ids`, per purchase with any, how many places were
        seen after `since_ms` (the console's "playing now")."""
        ...


class Counters(Protocol):
    """Rate-limit counters in fixed windows. Each count is one atomic step; a shared
    store counts for every instance together, an embedded one for its one process."""

    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        """Count one hit against `bucket` in the current fixed window of `window_s`
        seconds and return the window's count so far, this hit included."""
        ...

    async def reserve(self, bucket: str, interval_ms: int, now_ms: int,
                      max_wait_ms: int, catch_up_ms: int = 0) -> int | None:
        """Pacing (virtual scheduling): one call every `interval_ms` for everyone
        sharing the bucket, so that no window of any length holds more than its share.
        Atomically: the bucket's next free moment is max(its stored one, now -
        `catch_up_ms`); if it is at most `max_wait_ms` away, take it (the next one moves
        `interval_ms` later) and return how long until it, in ms (0 when it is now or
        was missed by at most `catch_up_ms`: a caller woken late still takes it); else
        take nothing and return None."""
        ...

    async def hold(self, bucket: str, until_ms: int, now_ms: int) -> None:
        """No moment of the bucket is free before `until_ms` (a provider's 429 with its
        Retry-After), for everyone sharing it. Never brings the next free one nearer."""
        ...

    async def next_free_ms(self, bucket: str, now_ms: int) -> int:
        """How long until the bucket's next free moment (0: now), taking nothing."""
        ...


class Line(Protocol):
    """Buyers waiting for a QR while the provider's pace is used up (gateway/line.py),
    one entry per viewer and stream, served in the fair order of `line_model`. Shared by
    every process and instance on the store; each call is one atomic step."""

    async def join(self, user_id: str, stream_id: str, address: str, now_ms: int,
                   *, front: bool = False) -> LinePlace:
        """Put the viewer in line for the stream with `line_model.fair_score`, or, when
        they are in line already, leave them where they are; either way their place."""
        ...

    async def standings(self, members: list[tuple[str, str]]
                        ) -> dict[tuple[str, str], Standing]:
        """Of these (userId, streamId), the ones in line and where they stand."""
        ...

    async def length(self) -> int: ...

    async def pop(self) -> LineEntry | None:
        """Take the head of the line (the line's virtual clock moves to its score), or
        None when nobody waits. One caller gets each entry, whichever instance asks."""
        ...

    async def put_back(self, entry: LineEntry) -> None:
        """Put a popped entry back where it stood (its score and arrival): the provider
        turned it away for going too fast. Nothing when the viewer joined again since."""
        ...

    async def leave(self, user_id: str, stream_id: str) -> None: ...


class Changes(Protocol):
    """Status changes across the instances sharing a store. Delivered at most once and
    only while subscribed: a follower resyncs from the store on every subscription."""

    @property
    def shared(self) -> bool:
        """Whether other instances may share this store (and so need telling)."""
        ...

    async def publish(self, session: PaymentSession) -> None:
        """Tell the other instances sharing this store that a session changed."""
        ...

    def changes(self, on_subscribed: Callable[[], Awaitable[None]]
                ) -> AsyncIterator[PaymentSession]:
        """Sessions changed by other instances, from the moment `on_subscribed` is
        called (so the caller can resync what it may have missed before that). Only
        for a shared store."""
        ...


class SignIns(Protocol):
    """Operators' console sign-ins ended before their cookie's own end (signed out):
    every copy of that cookie is refused, on every instance sharing the store, until it
    would have expired anyway."""

    async def end(self, sign_in_id: str, until_ms: int, now_ms: int) -> None:
        """Record that the sign-in ended; forget it after `until_ms`."""
        ...

    async def is_ended(self, sign_in_id: str, now_ms: int) -> bool: ...


class Refunds(Protocol):
    """Refunds of payments (`refund_model`). A payment's refunds are made one at a time:
    `create` reads them and writes the new one in one transaction, so two requests can
    never both take what remains of a payment."""

    async def create(self, trx_id: str, decide: Callable[[list[Refund]], Refund]) -> Refund:
        """Atomically: the payment's refunds as stored, `decide` over them (it may refuse
        by raising), and the refund it returns written."""
        ...

    async def save(self, refund: Refund) -> None:
        """A refund's new state, as `refund_model` decided it."""
        ...

    async def get(self, refund_id: str) -> Refund | None: ...

    async def of_payment(self, trx_id: str) -> list[Refund]:
        """The payment's refunds, first first."""
        ...

    async def by_provider_id(self, provider_refund_id: str) -> Refund | None: ...

    async def listing(self, status: RefundStatus | None, trx_id: str | None,
                      limit: int) -> list[Refund]:
        """Refunds, newest first, optionally of one status and one payment."""
        ...

    async def unanswered(self, limit: int) -> list[Refund]:
        """Requested refunds the provider never answered (no id of its own), longest
        waiting first: the ones to ask again, with the same key."""
        ...


class Cancellations(Protocol):
    """Shows called off, kept whatever the catalog says."""

    async def cancel(self, cancellation: Cancellation) -> Cancellation:
        """Record it, unless the show was cancelled already: the first one stands."""
        ...

    async def all(self) -> dict[str, Cancellation]: ...


class MediaKeys(Protocol):
    """The keys media is encrypted with under `GATEWAY_DELIVERY=keys`, 16 bytes each,
    named by stream and key id (`delivery.keys.KeyId` as text). Every instance must
    encrypt a segment under the same key, so a key is made once, by whichever instance
    asks first, and never changes. It matches `delivery.keys.KeyStore`."""

    async def get(self, stream_id: str, key_id: str) -> bytes | None:
        """The key, or None when none was made (or, with Redis, it has expired)."""
        ...

    async def create(self, stream_id: str, key_id: str, key: bytes) -> bytes:
        """Keep `key` unless the stream already has one under `key_id`; return the one
        kept. Atomic across instances: the first writer wins, and every caller gets the
        winner's bytes."""
        ...


class Connection(Protocol):
    """What the parts of one store share: its connections."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Store:
    """One opened store: its parts over one backend's connections."""

    sessions: PaymentSessions
    ledger: Ledger
    grants: DeviceGrants
    counters: Counters
    changes: Changes
    connection: Connection
    sign_ins: SignIns
    refunds: Refunds
    cancellations: Cancellations
    media_keys: MediaKeys
    line: Line

    @property
    def shared(self) -> bool:
        return self.changes.shared

    async def ping(self) -> None:
        """Return once the store has answered a trivial request (readiness)."""
        await self.connection.ping()

    async def close(self) -> None:
        await self.connection.close()
