"""The operator's view of the money, free of HTTP: the notification ledger with what
each entry needs from a person, and sales counted in hourly buckets.

Both are read by the console on every page view, so the store keeps them ready: sales
as counters per stream and hour, updated in the same transaction as the payment they
count, and every entry listed newest first under each of its *tags* (`ledger_tags`),
one per combination of what a query can filter on, so that any query reads one list
from its cursor (`LedgerQuery.scan`). What a filter means is decided here, once; the
stores keep the lists. Nothing here can pay a session: settling an entry only records
that a person dealt with the money (`decide_settlement`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlencode

from gateway.model import Notification, NotificationReason

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
# Days and "today" are counted in Western Indonesian Time (UTC+7, no daylight saving),
# where most viewers and the operator's books are.
LOCAL_OFFSET_MS = 7 * HOUR_MS

# Money that arrived and that we did not turn into access: someone must refund it or
# match it by hand. A later reason ending in `_refund_due` is one too.
NEEDS_PERSON_REASONS = frozenset({
    NotificationReason.AMOUNT_MISMATCH.value,
    NotificationReason.DUPLICATE_PAYMENT.value,
    NotificationReason.UNKNOWN_TRANSACTION.value,
    NotificationReason.NOT_UNDERSTOOD.value,
})


def needs_person(reason: str) -> bool:
    return reason in NEEDS_PERSON_REASONS or reason.endswith("_refund_due")


class LedgerStatus(StrEnum):
    APPLIED = "applied"  # the notification paid a session
    REFUSED = "refused"  # stored, changed nothing (duplicate, mismatch, unknown...)
    ATTENTION = "attention"  # needs a person and nobody has settled it yet
    SETTLED = "settled"  # a person recorded that they dealt with it


@dataclass(frozen=True, slots=True)
class Settlement:
    settled_at_ms: int
    settled_by: str
    note: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: int  # the ledger's own number, increasing with arrival
    notification: Notification
    applied: bool
    reason: str
    session_id: str | None
    stream_id: str | None  # the paid-for stream; None when the transaction is unknown
    settlement: Settlement | None = None

    @property
    def needs_person(self) -> bool:
        return needs_person(self.reason)

    @property
    def status(self) -> LedgerStatus:
        if self.settlement is not None:
            return LedgerStatus.SETTLED
        if self.needs_person:
            return LedgerStatus.ATTENTION
        return LedgerStatus.APPLIED if self.applied else LedgerStatus.REFUSED

    @property
    def statuses(self) -> tuple[LedgerStatus, ...]:
        """Every status a query may find this entry by: its outcome (applied or
        refused) and, for money a person must deal with, attention or settled."""
        return tuple(status for status in LedgerStatus if _status_matches(status, self))

    @property
    def cursor(self) -> tuple[int, int]:
        return self.notification.received_at_ms, self.entry_id


@dataclass(frozen=True, slots=True)
class LedgerScan:
    """What a store reads for a query: the entries listed under `tag`, newest first,
    with cursors from `since` (included) to `before` (excluded)."""

    tag: str
    since: tuple[int, int] | None
    before: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """Which entries to list, newest first. `before` continues a listing after the last
    entry of the previous page (its `cursor`), so deep pages cost what the first does."""

    stream_id: str | None = None
    reason: str | None = None
    status: LedgerStatus | None = None
    from_ms: int | None = None  # received at or after
    to_ms: int | None = None  # received before
    before: tuple[int, int] | None = None

    def matches(self, entry: LedgerEntry) -> bool:
        received_ms = entry.notification.received_at_ms
        return ((self.stream_id is None or entry.stream_id == self.stream_id)
                and (self.reason is None or entry.reason == self.reason)
                and (self.status is None or _status_matches(self.status, entry))
                and (self.from_ms is None or received_ms >= self.from_ms)
                and (self.to_ms is None or received_ms < self.to_ms)
                and (self.before is None or entry.cursor < self.before))

    def scan(self) -> LedgerScan:
        """The one list holding exactly the entries this query's filters name, and the
        stretch of it its dates and cursor leave (entry ids start at 1, so a cursor
        `(ms, 0)` falls before every entry received at `ms`)."""
        before = self.before
        if self.to_ms is not None and (before is None or (self.to_ms, 0) < before):
            before = (self.to_ms, 0)
        since = None if self.from_ms is None else (self.from_ms, 0)
        return LedgerScan(ledger_tag(self.stream_id, self.reason, self.status), since, before)


def _status_matches(status: LedgerStatus, entry: LedgerEntry) -> bool:
    if status is LedgerStatus.APPLIED:
        return entry.applied
    if status is LedgerStatus.REFUSED:
        return not entry.applied
    if status is LedgerStatus.ATTENTION:
        return entry.needs_person and entry.settlement is None
    return entry.settlement is not None


def ledger_tag(stream_id: str | None, reason: str | None, status: LedgerStatus | None
               ) -> str:
    """The name of the list of entries of this stream, reason and status (None: any),
    e.g. "stream=demo&status=refused"; "all" for the whole ledger."""
    named = {"stream": stream_id, "reason": reason, "status": status}
    return urlencode({key: value for key, value in named.items() if value is not None}) or "all"


def ledger_tags(entry: LedgerEntry) -> frozenset[str]:
    """Every list the entry is listed under: one per combination of its stream (when
    known), its reason and each of its statuses, "all" included. Eight for a payment,
    twelve for money a person must deal with."""
    streams = (None,) if entry.stream_id is None else (None, entry.stream_id)
    return frozenset(ledger_tag(stream_id, reason, status)
                     for stream_id in streams for reason in (None, entry.reason)
                     for status in (None, *entry.statuses))


@dataclass(frozen=True, slots=True)
class SettleDecision:
    """A settled entry, and the lists it leaves and joins (attention for settled)."""

    entry: LedgerEntry
    untag: frozenset[str]
    tag: frozenset[str]


def decide_settlement(entry: LedgerEntry, settlement: Settlement) -> SettleDecision | None:
    """A person records that they dealt with an entry: only one that needs a person and
    is not settled yet. None when there is nothing to settle. Pure: no I/O, no clock."""
    if not entry.needs_person or entry.settlement is not None:
        return None
    settled = replace(entry, settlement=settlement)
    before, after = ledger_tags(entry), ledger_tags(settled)
    return SettleDecision(settled, before - after, after - before)


@dataclass(frozen=True, slots=True)
class SalesBucket:
    """One stream's hour: QRs created in it, and tickets sold (sessions paid) in it."""

    stream_id: str
    hour_ms: int  # start of the hour, UTC ms
    qrs_created: int
    tickets_sold: int
    takings: int  # rupiah of the tickets sold
    refunded: int = 0  # rupiah of tickets given back in this hour (refunds that succeeded)

    @property
    def net_takings(self) -> int:
        return self.takings - self.refunded


def hour_start(ms: int) -> int:
    return ms - ms % HOUR_MS


def local_day_start(ms: int) -> int:
    return (ms + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS


@dataclass(frozen=True, slots=True)
class Takings:
    today: int
    last_7_days: int
    last_30_days: int


def takings(buckets: Iterable[SalesBucket], now_ms: int) -> Takings:
    """Today since local midnight; the last 7 and 30 days include today."""
    today_ms = local_day_start(now_ms)
    starts = (today_ms, today_ms - 6 * DAY_MS, today_ms - 29 * DAY_MS)
    totals = [0, 0, 0]
    for bucket in buckets:
        for index, start_ms in enumerate(starts):
            if start_ms <= bucket.hour_ms <= now_ms:
                totals[index] += bucket.net_takings
    return Takings(*totals)


@dataclass(frozen=True, slots=True)
class SalesSeries:
    """What the chart draws: bucket start times, and per stream one value per bucket."""

    bucket_starts_ms: list[int]
    tickets: dict[str, list[int]]
    takings: dict[str, list[int]]


def sales_series(buckets: Iterable[SalesBucket], stream_ids: Sequence[str], from_ms: int,
                 to_ms: int, bucket_ms: int) -> SalesSeries:
    """Hourly buckets summed into `bucket_ms` buckets (an hour, or a local day), with
    zeroes where nothing sold, so the chart's time axis has no holes."""
    align = local_day_start if bucket_ms == DAY_MS else hour_start
    first_ms = align(from_ms)
    starts = list(range(first_ms, to_ms, bucket_ms))
    tickets = {stream_id: [0] * len(starts) for stream_id in stream_ids}
    money = {stream_id: [0] * len(starts) for stream_id in stream_ids}
    for bucket in buckets:
        index = (bucket.hour_ms - first_ms) // bucket_ms
        if bucket.stream_id in tickets and 0 <= index < len(starts):
            tickets[bucket.stream_id][index] += bucket.tickets_sold
            money[bucket.stream_id][index] += bucket.net_takings
    return SalesSeries(starts, tickets, money)


@dataclass(frozen=True, slots=True)
class Conversion:
    qrs_created: int
    tickets_sold: int

    @property
    def percent(self) -> float | None:
        return None if not self.qrs_created else 100.0 * self.tickets_sold / self.qrs_created


def conversion_by_stream(buckets: Iterable[SalesBucket]) -> dict[str, Conversion]:
    qrs: dict[str, int] = {}
    sold: dict[str, int] = {}
    for bucket in buckets:
        qrs[bucket.stream_id] = qrs.get(bucket.stream_id, 0) + bucket.qrs_created
        sold[bucket.stream_id] = sold.get(bucket.stream_id, 0) + bucket.tickets_sold
    return {stream_id: Conversion(qrs[stream_id], sold[stream_id]) for stream_id in qrs}


CSV_HEADER = ("entry_id", "received_at_utc", "provider", "trx_id", "event_id", "session_id",
              "stream_id", "amount", "fee", "reported_status", "paid_at_utc", "applied", "reason",
              "status", "settled_at_utc", "settled_by", "settlement_note")


def csv_row(entry: LedgerEntry) -> list[str]:
    note, settlement = entry.notification, entry.settlement
    return [_cell(value) for value in (
        str(entry.entry_id), utc_text(note.received_at_ms), note.provider, note.trx_id,
        note.event_id, entry.session_id or "", entry.stream_id or "", str(note.amount),
        str(note.fee), note.reported_status, utc_text(note.paid_at_ms),
        "1" if entry.applied else "0", entry.reason, entry.status.value,
        utc_text(settlement.settled_at_ms if settlement else None),
        settlement.settled_by if settlement else "", settlement.note if settlement else "",
    )]


def utc_text(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def local_time(ms: int | None) -> str:
    """A moment as the operator reads it: Western Indonesian Time, to the second."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp((ms + LOCAL_OFFSET_MS) / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " WIB"


def _cell(value: str) -> str:
    """A spreadsheet opening the export must not run a provider's or an operator's text
    as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
