"""Time as milliseconds since the epoch, injected so that expiry is testable without waiting."""

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000
