"""Limits on what one client may make us do: payment sessions (each costs a provider
transaction with a real provider) per client address and per viewer, counted in fixed
windows in the store, so that with Redis every instance counts together."""

from __future__ import annotations

from gateway.clock import Clock
from gateway.errors import RateLimited
from gateway.settings import Settings
from gateway.store.base import Counters


class SessionCreationLimits:
    def __init__(self, counters: Counters, clock: Clock, settings: Settings) -> None:
        self._counters = counters
        self._clock = clock
        self._per_address = settings.qr_rate_per_address  # 0: no limit
        self._per_viewer = settings.qr_rate_per_viewer
        self._window_s = settings.qr_rate_window_seconds

    async def admit(self, address: str | None, user_id: str) -> None:
        """Count one new payment session, or refuse it (429) while over a limit."""
        now_ms = self._clock()
        for bucket, limit in ((f"qr-addr:{address}", self._per_address),
                              (f"qr-viewer:{user_id}", self._per_viewer)):
            if limit and await self._counters.count_hit(bucket, self._window_s, now_ms) > limit:
                window_ms = self._window_s * 1000
                raise RateLimited(retry_after_s=max(1, -(-(window_ms - now_ms % window_ms)
                                                          // 1000)))
