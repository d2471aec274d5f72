"""Payment providers: one interface (`base.Provider`), one module per provider.

`make_provider` is the registry: GATEWAY_PROVIDER names a factory here, which builds
the adapter from the settings (its credentials, GATEWAY_PROVIDER_URL, timeouts).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.clock import Clock
from gateway.providers.base import Provider
from gateway.settings import Settings, SettingsError

__all__ = ["Provider", "make_provider"]


def _simulator(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.simulator import SimulatorProvider

    return SimulatorProvider(settings.merchant, settings.webhook_secret, clock,
                             settings.webhook_tolerance_seconds)


def _midtrans(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.midtrans import MidtransProvider

    return MidtransProvider(settings.credential("GATEWAY_MIDTRANS_SERVER_KEY"), clock,
                            base_url=settings.provider_url,
                            timeout_s=settings.provider_timeout_seconds,
                            acquirer=settings.midtrans_acquirer)


def _otomatis(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.otomatis import OtomatisProvider

    return OtomatisProvider(settings.credential("GATEWAY_OTOMATIS_USERNAME"),
                            settings.credential("GATEWAY_OTOMATIS_API_KEY"),
                            settings.credential("GATEWAY_OTOMATIS_CLIENT"),
                            settings.credential("GATEWAY_OTOMATIS_CLIENT_KEY"), clock,
                            base_url=settings.provider_url,
                            timeout_s=settings.provider_timeout_seconds)


def _xendit(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.xendit import DEFAULT_BASE_URL, XenditProvider

    return XenditProvider(settings.credential("GATEWAY_XENDIT_SECRET_KEY"),
                          settings.credential("GATEWAY_XENDIT_CALLBACK_TOKEN"), None, clock,
                          base_url=settings.provider_url or DEFAULT_BASE_URL,
                          timeout_seconds=settings.provider_timeout_seconds)


def _tripay(settings: Settings, clock: Clock) -> Provider:
    from gateway.providers.tripay import DEFAULT_BASE_URL, TripayProvider

    if settings.tripay_customer_email is None:  # from_env always settles it for Tripay
        raise SettingsError("GATEWAY_TRIPAY_CUSTOMER_EMAIL: required with GATEWAY_PROVIDER=tripay")
    return TripayProvider(settings.credential("GATEWAY_TRIPAY_API_KEY"),
                          settings.credential("GATEWAY_TRIPAY_PRIVATE_KEY"),
                          settings.credential("GATEWAY_TRIPAY_MERCHANT_CODE"), None, clock,
                          customer_email=settings.tripay_customer_email,
                          base_url=settings.provider_url or DEFAULT_BASE_URL,
                          method=settings.tripay_method,
                          timeout_seconds=settings.provider_timeout_seconds)


_FACTORIES: dict[str, Callable[[Settings, Clock], Provider]] = {
    "simulator": _simulator,
    "midtrans": _midtrans,
    "otomatis": _otomatis,
    "xendit": _xendit,
    "tripay": _tripay,
}


def make_provider(settings: Settings, clock: Clock) -> Provider:
    factory = _FACTORIES.get(settings.provider)
    if factory is None:
        raise ValueError(f"GATEWAY_PROVIDER: unknown provider {settings.provider!r}")
    return factory(settings, clock)
