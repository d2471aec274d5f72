"""Payment providers: one interface (`base.Provider`), one module per provider."""

from __future__ import annotations

from gateway.clock import Clock
from gateway.providers.base import Provider
from gateway.settings import Settings

__all__ = ["Provider", "make_provider"]


def make_provider(settings: Settings, clock: Clock) -> Provider:
    if settings.provider == "simulator":
        from gateway.providers.simulator import SimulatorProvider

        return SimulatorProvider(settings.merchant, settings.webhook_secret, clock,
                                 settings.webhook_tolerance_seconds)
    raise ValueError(f"GATEWAY_PROVIDER: unknown provider {settings.provider!r}")
