"""Payment providers: one interface (`base.Provider`), one module per provider.

`make_provider` is the registry: GATEWAY_PROVIDER names a factory here, which builds
the adapter from the settings (its credentials, GATEWAY_PROVIDER_URL, timeouts).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.clock import Clock
from gateway.providers.base import Provider
from gateway.settings import Settings

__all__ = ["Provider", "make_provider"]


def _simulator(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.simulator import SimulatorProvider

    return SimulatorProvider(settings.merchant, settings.webhook_secret, clock,
                             settings.webhook_tolerance_seconds)


def _midtrans(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.midtrans import MidtransProvider

    return MidtransProvider(settings.credential("GATEWAY_MIDTRANS_SERVER_KEY"), clock,
                            base_url=settings.provider_url,
                            timeout_s=settings.provider_timeout_seconds)


def _otomatis(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.otomatis import OtomatisProvider

    return OtomatisProvider(settings.credential("GATEWAY_OTOMATIS_USERNAME"),
                            settings.credential("GATEWAY_OTOMATIS_API_KEY"), clock,
                            base_url=settings.provider_url,
                            timeout_s=settings.provider_timeout_seconds)


_FACTORIES: dict[str, Callable[[Settings, Clock], Provider]] = {
    "simulator": _simulator,
    "midtrans": _midtrans,
    "otomatis": _otomatis,
}


def make_provider(settings: Settings, clock: Clock) -> Provider:
    factory = _FACTORIES.get(settings.provider)
    if factory is None:
        raise ValueError(f"GATEWAY_PROVIDER: unknown provider {settings.provider!r}")
    return factory(settings, clock)
