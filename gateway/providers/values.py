"""Values as providers write them: amounts as text ("1000.00"), and local times
without a zone, which Indonesian providers mean as Western Indonesia Time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

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


def whole_rupiah(value: object) -> int | None:
    """1000, "1000" or "1000.00" as 1000; None for anything else (fractions included:
    only whole rupiah are prices here)."""
    if isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount != amount.to_integral_value() or amount < 0:
        return None
    return int(amount)
