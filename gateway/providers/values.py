"""Local times as Indonesian providers write them: without a zone, meaning Western
Indonesia Time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

WIB = timezone(timedelta(hours=7))

# A date and a time of day (`T` or a space between), fractional seconds or not, a zone
# or not: every form Midtrans and otomatis.vip were seen sending. A date alone is not
# a moment, so it is not one of them.
_PROVIDER_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?")


def wib_text(ms: int) -> str:
    """`YYYY-MM-DD HH:MM:SS +0700`, as Midtrans wants its order_time."""
    return datetime.fromtimestamp(ms / 1000, WIB).strftime("%Y-%m-%d %H:%M:%S +0700")


def provider_time_ms(value: object) -> int | None:
    """A provider's time as ms since the epoch: `2023-07-31T08:49:56`,
    `2023-07-31 08:49:56`, `2024-05-06T09:35:44.000Z`, `...+07:00`. One without a zone
    is WIB (never this machine's zone). None if it is not such a time."""
    if not isinstance(value, str) or not _PROVIDER_TIME.fullmatch(value.strip()):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:  # 2023-02-30, 25:00, ...
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=WIB)
    return int(moment.timestamp() * 1000)
