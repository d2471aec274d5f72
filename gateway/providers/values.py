"""Local times as Indonesian providers write them: without a zone, meaning Western
Indonesia Time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

WIB = timezone(timedelta(hours=7))


def wib_text(ms: int) -> str:
    """`YYYY-MM-DD HH:MM:SS +0700`, as Midtrans wants its order_time."""
    return datetime.fromtimestamp(ms / 1000, WIB).strftime("%Y-%m-%d %H:%M:%S +0700")


def wib_ms(value: object) -> int | None:
    """`YYYY-MM-DD HH:MM:SS` in WIB, as ms since the epoch; None if it is not that."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=WIB)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)

