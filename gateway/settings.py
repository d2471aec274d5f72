"""The only place that reads the environment.

`Settings.from_env()` validates every `GATEWAY_*` variable (and `PORT`) up front and
raises `SettingsError` with one line naming the variable, so a typo or a bad value stops
start-up instead of surfacing as odd behaviour hours later.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from gateway.qris import MerchantProfile, luhn_valid

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DEFAULT_CATALOG = PACKAGE_DIR / "demo" / "streams.toml"
# Every answer's Server header: aiohttp's names itself and Python with their versions,
# a free hint for an attacker.
SERVER_NAME = "stream-paygate"

T = TypeVar("T")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEFAULT_MERCHANT = MerchantProfile()

PROVIDERS = ("simulator", "otomatis", "midtrans", "xendit", "tripay")
# Create calls a minute each provider documents for live mode (GATEWAY_PROVIDER_RATE_
# PER_MINUTE's default). Xendit: 600 RPM per endpoint per account, sliding window, 60 in
# test mode (docs.xendit.co/apidocs/rate-limits). Midtrans documents limits only for
# payouts and account validation (docs.midtrans.com/reference/rate-limit), none for
# /v2/charge; Tripay and otomatis.vip publish none. Those get no cap: their 429, if it
# ever comes, still slows the line down.
PROVIDER_RATE_PER_MINUTE = {"xendit": 600}
# The credentials each provider needs (SPEC, "Real providers"): all required for it.
PROVIDER_VARIABLES: dict[str, tuple[str, ...]] = {
    "simulator": (),
    # The username is only a label; checkstatus needs the uuid (API key) AND the
    # panel's client name with that client's own secret.
    "otomatis": ("GATEWAY_OTOMATIS_USERNAME", "GATEWAY_OTOMATIS_API_KEY",
                 "GATEWAY_OTOMATIS_CLIENT", "GATEWAY_OTOMATIS_CLIENT_KEY"),
    "midtrans": ("GATEWAY_MIDTRANS_SERVER_KEY",),
    "xendit": ("GATEWAY_XENDIT_SECRET_KEY", "GATEWAY_XENDIT_CALLBACK_TOKEN"),
    "tripay": ("GATEWAY_TRIPAY_API_KEY", "GATEWAY_TRIPAY_PRIVATE_KEY",
               "GATEWAY_TRIPAY_MERCHANT_CODE"),
}
# Midtrans' QRIS acquirers (its `qris.acquirer`); the first is its default.
MIDTRANS_ACQUIRERS = ("gopay", "airpay shopee")
# Tripay's QRIS channels and the expiry each accepts, in minutes: every QR of a payment
# window outside its method's range would be refused.
TRIPAY_METHODS: dict[str, tuple[int, int]] = {
    "QRIS": (10, 60), "QRIS2": (10, 1440), "QRISC": (10, 1440)}
# What a provider's QRIS takes, whole rupiah, where it refuses other prices: a catalog
# price outside it could never be sold.
PROVIDER_PRICE_RUPIAH: dict[str, tuple[int, int]] = {
    "otomatis": (10_000, 10_000_000), "tripay": (1_000, 5_000_000)}


@dataclass(frozen=True, slots=True)
class ApiEnvironments:
    """How a provider's sandbox and production are told apart: by the credential's
    prefix, and by the API's base URL (host and path)."""

    credential: str
    sandbox_prefix: str
    production_url: str
    sandbox_url: str


# Xendit is not here: one host serves its test and live modes, the key alone decides.
API_ENVIRONMENTS: dict[str, ApiEnvironments] = {
    "midtrans": ApiEnvironments("GATEWAY_MIDTRANS_SERVER_KEY", "SB-Mid-server-",
                                "https://api.midtrans.com", "https://api.sandbox.midtrans.com"),
    "tripay": ApiEnvironments("GATEWAY_TRIPAY_API_KEY", "DEV-", "https://tripay.co.id/api",
                              "https://tripay.co.id/api-sandbox"),
}


class SettingsError(ValueError):
    """A configuration problem, phrased as one line that names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    secret: bytes
    webhook_secret: bytes
    host: str = "127.0.0.1"
    port: int = 8080
    store_url: str = "sqlite:///var/gateway.db"
    redis_key_prefix: str = "gateway:"
    streams_path: Path = DEFAULT_CATALOG
    provider: str = "simulator"
    previous_secrets: tuple[bytes, ...] = ()
    access_seconds: int = 7200
    payment_window_seconds: int = 1200
    cleanup_interval_seconds: int = 60
    unpaid_retention_seconds: int = 7 * 24 * 3600
    webhook_tolerance_seconds: int = 300
    api_key: str | None = None
    platform_jwt_secret: bytes | None = None
    platform_jwt_issuer: str | None = None
    platform_jwt_audience: str | None = None
    public_url: str | None = None
    # Proxies (nginx, a load balancer) whose X-Forwarded-* headers are believed.
    trusted_proxies: tuple[IpNetwork, ...] = ()
    var_dir: Path = Path("var")
    max_body_bytes: int = 64 * 1024
    segment_cache_bytes: int = 64 * 1024 * 1024
    upstream_timeout_seconds: int = 10
    header_timeout_seconds: int = 10
    body_timeout_seconds: int = 10
    max_connections: int = 0  # 0: from the descriptor limit (see gateway/serve.py)
    store_timeout_seconds: int = 5
    qr_rate_per_address: int = 120
    qr_rate_per_viewer: int = 10
    qr_rate_window_seconds: int = 60
    # Provider create calls a minute, across every instance sharing the store (0: no
    # cap); beyond it buyers wait in line (gateway/line.py). From_env defaults it to the
    # provider's documented live limit (PROVIDER_RATE_PER_MINUTE).
    provider_rate_per_minute: int = 0
    # How fast the line is served when the provider has no cap (it then holds only the
    # overflow of addresses past GATEWAY_QR_RATE_PER_ADDRESS).
    queue_rate_per_minute: int = 1200
    max_websockets_per_viewer: int = 8
    frame_ancestors: str = "'none'"
    max_devices: int = 2  # 0: no device limit, grants are not counted
    log_level: str = "INFO"
    log_format: str = "json"
    merchant: MerchantProfile = field(default_factory=MerchantProfile)
    # The viewer's footer: where to get help and the terms of sale. None: not shown.
    support_url: str | None = None
    terms_url: str | None = None
    stream_check_interval_seconds: int = 5
    stream_offline_after_seconds: int = 60
    # The real provider's API base (None: its production URL) and its credentials, by
    # variable name (only the selected provider's, see PROVIDER_VARIABLES).
    provider_url: str | None = None
    provider_credentials: Mapping[str, str] = field(default_factory=dict)
    provider_timeout_seconds: float = 10
    reconcile_interval_seconds: int = 30
    midtrans_acquirer: str = MIDTRANS_ACQUIRERS[0]
    tripay_method: str = "QRIS"
    # The customer_email Tripay requires (it validates it): an address of the merchant's,
    # never a viewer's. With Tripay, from_env derives it when it is not given.
    tripay_customer_email: str | None = None
    # GATEWAY_WORKERS processes serve one port (gateway/workers.py). A worker is told
    # its index and the listening socket's descriptor by its supervisor.
    refund_retry_seconds: int = 60
    workers: int = 1
    worker_index: int | None = None
    worker_fd: int | None = None
    # "gate": the service serves or decides every playlist and segment; "keys": media is
    # encrypted and public (any CDN may carry it), the service decides only the keys.
    delivery: str = "gate"
    key_rotation_seconds: int = 120  # keys delivery: a new key about this often

    @property
    def runs_background_jobs(self) -> bool:
        """The sweeper and reconciliation run in one process per instance: the only
        one, or worker 0."""
        return self.worker_index in (None, 0)

    def credential(self, name: str) -> str:
        """A credential of the selected provider; from_env made sure it is there."""
        return self.provider_credentials[name]

    @property
    def secure_cookies(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        var_dir = Path(env.get("GATEWAY_VAR_DIR", str, "var"))
        store_url = env.get("GATEWAY_STORE", _store_url, "sqlite:///var/gateway.db")

        def secret(name: str, file_name: str) -> bytes:
            if name in env:
                return env.get(name, _secret)
            if not store_url.startswith("sqlite:"):
                # Each instance would make its own, and refuse the others' tokens.
                raise SettingsError(f"{name}: must be set when instances share a Redis "
                                    "store (the same value on every instance)")
            return _secret_file(var_dir / file_name, name)

        provider = env.get("GATEWAY_PROVIDER", _one_of(*PROVIDERS), "simulator")
        # Every provider's variables are known (an operator may stage the next one), but
        # only the selected provider's are required, and only they are kept.
        credentials: dict[str, str] = {}
        for name, variables in PROVIDER_VARIABLES.items():
            for variable in variables:
                value = env.get(variable, _credential, None)
                if name != provider:
                    continue
                if value is None:
                    raise SettingsError(f"{variable}: required with GATEWAY_PROVIDER={provider}")
                credentials[variable] = value

        settings = cls(
            host=env.get("GATEWAY_HOST", _host, "127.0.0.1"),
            port=env.get("PORT", _port, 8080),
            store_url=store_url,
            redis_key_prefix=env.get("GATEWAY_REDIS_KEY_PREFIX", _key_prefix, "gateway:"),
            streams_path=env.get("GATEWAY_STREAMS", _existing_file, DEFAULT_CATALOG),
            provider=provider,
            provider_url=env.get("GATEWAY_PROVIDER_URL", _public_url, None),
            provider_credentials=credentials,
            provider_timeout_seconds=env.get(
                "GATEWAY_PROVIDER_TIMEOUT_SECONDS", _seconds(1, 60), 10
            ),
            reconcile_interval_seconds=env.get(
                "GATEWAY_RECONCILE_INTERVAL_SECONDS", _seconds(1, 3600), 30
            ),
            midtrans_acquirer=env.get("GATEWAY_MIDTRANS_ACQUIRER", _one_of(*MIDTRANS_ACQUIRERS),
                                      MIDTRANS_ACQUIRERS[0]),
            tripay_method=env.get("GATEWAY_TRIPAY_METHOD", _one_of(*TRIPAY_METHODS), "QRIS"),
            tripay_customer_email=env.get("GATEWAY_TRIPAY_CUSTOMER_EMAIL", _email, None),
            secret=secret("GATEWAY_SECRET", "secret"),
            previous_secrets=env.get("GATEWAY_PREVIOUS_SECRETS", _secret_list, ()),
            webhook_secret=secret("GATEWAY_WEBHOOK_SECRET", "webhook_secret"),
            access_seconds=env.get("GATEWAY_ACCESS_SECONDS", _seconds(5, 30 * 86400), 7200),
            payment_window_seconds=env.get(
                "GATEWAY_PAYMENT_WINDOW_SECONDS", _seconds(5, 86400), 1200
            ),
            cleanup_interval_seconds=env.get(
                "GATEWAY_CLEANUP_INTERVAL_SECONDS", _seconds(1, 3600), 60
            ),
            unpaid_retention_seconds=env.get(
                "GATEWAY_UNPAID_RETENTION_SECONDS", _seconds(0, 365 * 86400), 7 * 86400
            ),
            api_key=env.get("GATEWAY_API_KEY", _api_key, None),
            platform_jwt_secret=env.get("GATEWAY_PLATFORM_JWT_SECRET", _secret, None),
            platform_jwt_issuer=env.get("GATEWAY_PLATFORM_JWT_ISSUER", _nonempty, None),
            platform_jwt_audience=env.get("GATEWAY_PLATFORM_JWT_AUDIENCE", _nonempty, None),
            public_url=env.get("GATEWAY_PUBLIC_URL", _public_url, None),
            trusted_proxies=env.get("GATEWAY_TRUSTED_PROXIES", _networks, ()),
            var_dir=var_dir,
            max_body_bytes=env.get("GATEWAY_MAX_BODY_BYTES", _int_range(1024, 1 << 20), 65536),
            segment_cache_bytes=env.get(
                "GATEWAY_SEGMENT_CACHE_BYTES", _int_range(0, 1 << 40), 64 * 1024 * 1024
            ),
            upstream_timeout_seconds=env.get(
                "GATEWAY_UPSTREAM_TIMEOUT_SECONDS", _seconds(1, 120), 10
            ),
            header_timeout_seconds=env.get(
                "GATEWAY_HEADER_TIMEOUT_SECONDS", _seconds(1, 300), 10),
            body_timeout_seconds=env.get("GATEWAY_BODY_TIMEOUT_SECONDS", _seconds(1, 300), 10),
            max_connections=env.get("GATEWAY_MAX_CONNECTIONS", _int_range(0, 1 << 20), 0),
            store_timeout_seconds=env.get(
                "GATEWAY_STORE_TIMEOUT_SECONDS", _seconds(1, 60), 5),
            qr_rate_per_address=env.get(
                "GATEWAY_QR_RATE_PER_ADDRESS", _int_range(0, 1_000_000), 120),
            qr_rate_per_viewer=env.get(
                "GATEWAY_QR_RATE_PER_VIEWER", _int_range(0, 1_000_000), 10),
            qr_rate_window_seconds=env.get(
                "GATEWAY_QR_RATE_WINDOW_SECONDS", _seconds(1, 86400), 60),
            provider_rate_per_minute=env.get(
                "GATEWAY_PROVIDER_RATE_PER_MINUTE", _int_range(0, 600_000),
                PROVIDER_RATE_PER_MINUTE.get(provider, 0)),
            queue_rate_per_minute=env.get(
                "GATEWAY_QUEUE_RATE_PER_MINUTE", _int_range(1, 600_000), 1200),
            max_websockets_per_viewer=env.get(
                "GATEWAY_MAX_WEBSOCKETS_PER_VIEWER", _int_range(1, 10_000), 8),
            frame_ancestors=env.get("GATEWAY_FRAME_ANCESTORS", _frame_ancestors, "'none'"),
            max_devices=env.get("GATEWAY_MAX_DEVICES", _int_range(0, 1000), 2),
            log_level=env.get(
                "GATEWAY_LOG_LEVEL", _one_of("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"
            ),
            log_format=env.get("GATEWAY_LOG_FORMAT", _one_of("json", "text"), "json"),
            support_url=env.get("GATEWAY_SUPPORT_URL", _contact_url, None),
            terms_url=env.get("GATEWAY_TERMS_URL", _web_url, None),
            stream_check_interval_seconds=env.get(
                "GATEWAY_STREAM_CHECK_INTERVAL_SECONDS", _seconds(1, 300), 5
            ),
            stream_offline_after_seconds=env.get(
                "GATEWAY_STREAM_OFFLINE_AFTER_SECONDS", _seconds(1, 3600), 60
            ),
            merchant=MerchantProfile(
                name=env.get("GATEWAY_MERCHANT_NAME", _qris_text(25), _DEFAULT_MERCHANT.name),
                city=env.get("GATEWAY_MERCHANT_CITY", _qris_text(15), _DEFAULT_MERCHANT.city),
                postal_code=env.get(
                    "GATEWAY_MERCHANT_POSTAL_CODE", _digits(1, 10), _DEFAULT_MERCHANT.postal_code
                ),
                mcc=env.get("GATEWAY_MERCHANT_MCC", _digits(4, 4), _DEFAULT_MERCHANT.mcc),
                pan=env.get("GATEWAY_MERCHANT_PAN", _merchant_pan, _DEFAULT_MERCHANT.pan),
                merchant_id=env.get(
                    "GATEWAY_MERCHANT_ID", _qris_text(15), _DEFAULT_MERCHANT.merchant_id
                ),
                nmid=env.get("GATEWAY_MERCHANT_NMID", _nmid, _DEFAULT_MERCHANT.nmid),
            ),
            refund_retry_seconds=env.get(
                "GATEWAY_REFUND_RETRY_SECONDS", _seconds(1, 86400), 60),
            workers=env.get("GATEWAY_WORKERS", _int_range(1, 256), 1),
            # Set by the supervisor for its workers, never by hand.
            worker_index=env.get("GATEWAY_WORKER_INDEX", _int_range(0, 255), None),
            worker_fd=env.get("GATEWAY_WORKER_FD", _int_range(3, 1 << 20), None),
            delivery=env.get("GATEWAY_DELIVERY", _one_of("gate", "keys"), "gate"),
            key_rotation_seconds=env.get(
                "GATEWAY_KEY_ROTATION_SECONDS", _seconds(1, 86400), 120),
        )
        env.reject_unknown()
        if (settings.worker_index is None) != (settings.worker_fd is None):
            raise SettingsError("GATEWAY_WORKER_INDEX and GATEWAY_WORKER_FD: set together, "
                                "by `gateway serve`'s supervisor only")
        # Providers retry a notification for up to a day after the QR's window: an
        # unpaid session pruned before then turns a late payment into an unknown one.
        least_retention_s = settings.payment_window_seconds + 86400
        if settings.unpaid_retention_seconds < least_retention_s:
            raise SettingsError(
                f"GATEWAY_UNPAID_RETENTION_SECONDS: must be at least the payment window "
                f"plus a day of provider retries ({least_retention_s}), got "
                f"{settings.unpaid_retention_seconds} (late payments would be unknown)")
        _check_provider_environment(settings)
        if provider == "tripay":
            settings = _tripay_checked(settings)
        if provider in PROVIDER_PRICE_RUPIAH:
            _check_catalog_prices(settings)
        return settings


def _check_provider_environment(settings: Settings) -> None:
    """A sandbox key with a production API, or the reverse: every call would be refused,
    or worse, a test setup would take real money. A URL that is neither (a local fake, a
    proxy) goes with either."""
    environments = API_ENVIRONMENTS.get(settings.provider)
    if environments is None:
        return
    key = settings.credential(environments.credential)
    url = settings.provider_url
    api = _api_kind(url or environments.production_url, environments)
    if url and api is None and _hostname_of(url) in (
            _hostname_of(environments.production_url), _hostname_of(environments.sandbox_url)):
        # The provider's own host with another path (Tripay's without `/api-sandbox` or
        # `/api`): every call would go to a page that is not its API.
        raise SettingsError(
            f"GATEWAY_PROVIDER_URL: {url} is not {settings.provider}'s API; use "
            f"{environments.sandbox_url} (sandbox) or unset it (production, "
            f"{environments.production_url})")
    shown_url = (f"GATEWAY_PROVIDER_URL={url}" if url else
                 f"GATEWAY_PROVIDER_URL unset (the production API {environments.production_url})")
    if key.startswith(environments.sandbox_prefix) and api == "production":
        raise SettingsError(
            f"{environments.credential}: a sandbox key ({environments.sandbox_prefix}...) "
            f"with {shown_url}; use GATEWAY_PROVIDER_URL={environments.sandbox_url} or the "
            "production key")
    if not key.startswith(environments.sandbox_prefix) and api == "sandbox":
        raise SettingsError(
            f"{environments.credential}: a production key with {shown_url}; use the sandbox "
            f"key ({environments.sandbox_prefix}...) or unset GATEWAY_PROVIDER_URL")


def _hostname_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _api_kind(url: str, environments: ApiEnvironments) -> str | None:
    """"production", "sandbox", or None for any other API (a local fake, a proxy)."""
    def place(of: str) -> tuple[str, str]:
        parts = urlsplit(of)
        return (parts.hostname or "").lower(), parts.path.rstrip("/")

    where = place(url)
    if where == place(environments.production_url):
        return "production"
    if where == place(environments.sandbox_url):
        return "sandbox"
    return None


def _tripay_checked(settings: Settings) -> Settings:
    low_min, high_min = TRIPAY_METHODS[settings.tripay_method]
    if not low_min * 60 <= settings.payment_window_seconds <= high_min * 60:
        raise SettingsError(
            f"GATEWAY_PAYMENT_WINDOW_SECONDS: must be from {low_min * 60} to {high_min * 60} "
            f"(seconds) with GATEWAY_PROVIDER=tripay and GATEWAY_TRIPAY_METHOD="
            f"{settings.tripay_method} (its QRIS expiry), got {settings.payment_window_seconds}")
    if settings.tripay_customer_email is not None:
        return settings
    host = urlsplit(settings.public_url or "").hostname or ""
    if "." not in host or _is_address(host):
        raise SettingsError(
            "GATEWAY_TRIPAY_CUSTOMER_EMAIL: required with GATEWAY_PROVIDER=tripay unless "
            "GATEWAY_PUBLIC_URL names your domain: Tripay wants a valid customer email, and "
            "viewers give none (e.g. no-reply@your-domain.id)")
    return replace(settings, tripay_customer_email=f"no-reply@{host}")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_catalog_prices(settings: Settings) -> None:
    from gateway.catalog import Catalog

    low, high = PROVIDER_PRICE_RUPIAH[settings.provider]
    for stream in Catalog.load(settings.streams_path):
        if not low <= stream.price <= high:
            limit = f"minimum of {_rupiah(low)}" if stream.price < low else \
                f"maximum of {_rupiah(high)}"
            raise SettingsError(
                f"GATEWAY_STREAMS: stream {stream.stream_id!r} costs {_rupiah(stream.price)}, "
                f"outside {settings.provider}'s {limit} for a QRIS payment")


def _rupiah(amount: int) -> str:
    return f"Rp{amount:,}".replace(",", ".")


class _Env:
    """Reads variables through parsers and remembers which ones it was asked about."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._known: set[str] = set()

    def __contains__(self, name: str) -> bool:
        self._known.add(name)
        return name in self._environ

    def get(self, name: str, parse: Callable[[str], T], default: T | None = None) -> T:
        self._known.add(name)
        raw = self._environ.get(name)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            return parse(raw)
        except SettingsError as exc:
            raise SettingsError(f"{name}: {exc}") from None

    def reject_unknown(self) -> None:
        self._known.update(_ACCEPTED_ELSEWHERE)
        unknown = sorted(name for name in self._environ
                         if name.startswith("GATEWAY_") and name not in self._known)
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting (check the spelling)")


# Variables read by the tests and the bootstrap script, not by the service.
_ACCEPTED_ELSEWHERE = frozenset({"GATEWAY_TEST_REDIS_URL", "GATEWAY_FUZZ_SEED",
                                 "GATEWAY_FUZZ_EXAMPLES"})


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"[0-9]+", raw.strip()):
            raise SettingsError(f"must be a whole number from {low} to {high}, got {raw!r}")
        value = int(raw)
        if not low <= value <= high:
            raise SettingsError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _seconds(low: int, high: int) -> Callable[[str], int]:
    parse_int = _int_range(low, high)

    def parse(raw: str) -> int:
        try:
            return parse_int(raw)
        except SettingsError as exc:
            raise SettingsError(f"{exc} (seconds)") from None

    return parse


_port = _int_range(1, 65535)


def _host(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]{1,253}", raw):
        raise SettingsError(f"not a host name or address: {raw!r}")
    return raw


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"must be one of {', '.join(choices)}; got {raw!r}")
        return raw

    return parse


def _frame_ancestors(raw: str) -> str:
    """A CSP frame-ancestors source list: 'none', 'self', or origins to allow."""
    if not re.fullmatch(r"[A-Za-z0-9'*:/.\- ]{1,500}", raw) or not raw.strip():
        raise SettingsError("must be a frame-ancestors source list, e.g. 'none' or "
                            f"'self' https://partner.example; got {raw!r}")
    return raw.strip()


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise SettingsError("must not be empty")
    return raw


def _store_url(raw: str) -> str:
    if raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
        return raw
    parts = urlsplit(raw)
    if parts.scheme in ("redis", "rediss"):
        database = parts.path.strip("/")
        try:
            port_ok = parts.port is None or 0 < parts.port < 65536
        except ValueError:
            port_ok = False
        if parts.hostname and port_ok and (database == "" or database.isdigit()):
            return raw
        raise SettingsError(f"not a Redis URL (redis://HOST:PORT/DB): {raw!r}")
    if parts.scheme == "unix" and parts.path:
        return raw
    raise SettingsError(
        f"must be sqlite:///PATH, sqlite:///:memory: or redis://HOST:PORT/DB; got {raw!r}"
    )


def _key_prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.-]{1,64}", raw):
        raise SettingsError("must be 1-64 letters, digits or : _ . -")
    return raw


def _existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"no such file: {raw}")
    return path


def _secret(raw: str) -> bytes:
    if len(raw) < 32:
        raise SettingsError("must be at least 32 characters (use `openssl rand -hex 32`)")
    return raw.encode()


def _secret_list(raw: str) -> tuple[bytes, ...]:
    return tuple(_secret(item.strip()) for item in raw.split(",") if item.strip())


def _credential(raw: str) -> str:
    # Keys pasted from a dashboard: a stray space or newline would fail every call later.
    if not re.fullmatch(r"[!-~]{1,256}", raw):
        raise SettingsError("must be 1 to 256 printable characters without spaces")
    return raw


def _email(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*"
                        r"\.[A-Za-z]{2,24}", raw):
        raise SettingsError(f"must be an email address, e.g. no-reply@your-domain.id; got {raw!r}")
    return raw


def _api_key(raw: str) -> str:
    if len(raw) < 24:
        raise SettingsError("must be at least 24 characters")
    return raw


def _public_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"must be an http:// or https:// URL; got {raw!r}")
    return raw.rstrip("/")


def _web_url(raw: str) -> str:
    """A link shown to viewers: http(s) only, so a typo cannot put `javascript:` there."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(
            ch.isspace() for ch in raw):
        raise SettingsError(f"must be an http:// or https:// URL; got {raw!r}")
    return raw


def _contact_url(raw: str) -> str:
    """Help for viewers: a web page, `mailto:` or a WhatsApp number as `https://wa.me/`."""
    if raw.startswith("mailto:"):
        if not re.fullmatch(r"mailto:[^@\s]+@[^@\s]+\.[^@\s]+", raw):
            raise SettingsError(f"must be mailto:name@example.id or an https:// URL; got {raw!r}")
        return raw
    return _web_url(raw)


def _networks(raw: str) -> tuple[IpNetwork, ...]:
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"not an address or CIDR: {item!r}") from None
    return tuple(networks)


def _qris_text(max_length: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not 1 <= len(raw) <= max_length or not re.fullmatch(r"[ -~]+", raw):
            raise SettingsError(f"must be 1 to {max_length} printable ASCII characters")
        return raw

    return parse


def _digits(low: int, high: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not re.fullmatch(rf"[0-9]{{{low},{high}}}", raw):
            raise SettingsError(f"must be {low} to {high} digits")
        return raw

    return parse


def _merchant_pan(raw: str) -> str:
    if not re.fullmatch(r"9360[0-9]{8,15}", raw) or not luhn_valid(raw):
        raise SettingsError("must be a QRIS merchant PAN: 9360, digits, a Luhn check digit")
    return raw


def _nmid(raw: str) -> str:
    if not re.fullmatch(r"ID[0-9]{13}", raw):
        raise SettingsError("must be ID followed by 13 digits")
    return raw


def _secret_file(path: Path, name: str) -> bytes:
    """Generate a secret once and keep it, so that cookies and tokens survive restarts."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
        return value
    except FileExistsError:  # another process won the race: use its secret
        return path.read_bytes().strip()
    except OSError as exc:
        raise SettingsError(
            f"{name}: unset, and cannot keep a generated one in {path}: {exc}") from None
