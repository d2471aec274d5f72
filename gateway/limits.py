"""Limits on what one client may make us do: payment sessions (each costs a provider
transaction with a real provider) per client address and per viewer, counted in fixed
windows in the store, so that with Redis every instance counts together.

One viewer over their limit is refused (429): one identity hammering. An address over
its limit is not: many viewers behind one carrier NAT are a crowd, so its further
buyers wait in line (gateway/line.py), where fair queuing keeps a flood of identities
from one address from pushing anyone else back."""

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

    async def admit_viewer(self, user_id: str) -> None:
        """Count one new payment session for the viewer, or refuse it (429)."""
        if self._per_viewer and await self._counters.count_hit(
                f"qr-viewer:{user_id}", self._window_s, self._clock()) > self._per_viewer:
            raise RateLimited(retry_after_s=self._retry_after_s())

    async def address_over(self, address: str | None) -> bool:
        """Count one new payment session for the address; whether it is now over its
        limit (its buyers then wait in line)."""
        return bool(self._per_address) and await self._counters.count_hit(
            f"qr-addr:{address}", self._window_s, self._clock()) > self._per_address

    def _retry_after_s(self) -> int:
        window_ms = self._window_s * 1000
        return max(1, -(-(window_ms - self._clock() % window_ms) // 1000))
