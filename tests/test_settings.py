"""Configuration: every variable validated at start-up, one clear line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.providers import make_provider
from gateway.settings import (
    DEFAULT_CATALOG,
    PROVIDER_VARIABLES,
    PROVIDERS,
    Settings,
    SettingsError,
)


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    settings = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path)})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.store_url == "sqlite:///var/gateway.db"
    assert settings.streams_path == DEFAULT_CATALOG
    assert settings.provider == "simulator"
    assert (settings.access_seconds, settings.payment_window_seconds,
            settings.cleanup_interval_seconds) == (7200, 1200, 60)
    assert settings.api_key is None
    assert settings.max_devices == 2 and settings.trusted_proxies == ()
    assert (settings.delivery, settings.key_rotation_seconds) == ("gate", 120)


def test_generated_secrets_are_kept_and_private(tmp_path: Path) -> None:
    first = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path)})
    again = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path)})
    assert first.secret == again.secret and len(first.secret) == 64
    assert first.webhook_secret == again.webhook_secret != first.secret
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


TRIPAY_SANDBOX = {
    "GATEWAY_PROVIDER": "tripay", "GATEWAY_TRIPAY_API_KEY": "DEV-x",
    "GATEWAY_TRIPAY_PRIVATE_KEY": "p", "GATEWAY_TRIPAY_MERCHANT_CODE": "T1",
    "GATEWAY_PROVIDER_URL": "https://tripay.co.id/api-sandbox",
    "GATEWAY_TRIPAY_CUSTOMER_EMAIL": "no-reply@tonton.example.id"}
OTOMATIS = {
    "GATEWAY_PROVIDER": "otomatis", "GATEWAY_OTOMATIS_USERNAME": "tokotonton",
    "GATEWAY_OTOMATIS_API_KEY": "0c6f3a52-1d7e-4b8a-9f20-5e3b7c1d2a90",
    "GATEWAY_OTOMATIS_CLIENT": "toko-tonton", "GATEWAY_OTOMATIS_CLIENT_KEY": "ck-secret"}


def catalog_priced(tmp_path: Path, *prices: int) -> Path:
    """A catalog of one stream per price (file origins: nothing to reach)."""
    path = tmp_path / "priced.toml"
    path.write_text("".join(f'[[stream]]\nid = "show-{number}"\ntitle = "Show"\n'
                            f'price = {price}\norigin = "file:./"\n\n'
                            for number, price in enumerate(prices)))
    return path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT: must be a whole number from 1 to 65535, got 'http'"),
        ({"PORT": "70000"}, "PORT: must be from 1 to 65535, got 70000"),
        ({"GATEWAY_ACCESS_SECONDS": "2h"}, "GATEWAY_ACCESS_SECONDS: must be a whole number"),
        ({"GATEWAY_ACCESS_SECONDS": "-5"}, "GATEWAY_ACCESS_SECONDS: must be a whole number"),
        ({"GATEWAY_PAYMENT_WINDOW_SECONDS": "0"}, "GATEWAY_PAYMENT_WINDOW_SECONDS: must be from"),
        ({"GATEWAY_STORE": "mysql://x"}, "GATEWAY_STORE: must be sqlite:///PATH"),
        ({"GATEWAY_STREAMS": "/nonexistent.toml"}, "GATEWAY_STREAMS: no such file"),
        ({"GATEWAY_PROVIDER": "paypal"}, "GATEWAY_PROVIDER: must be one of simulator"),
        ({"GATEWAY_PROVIDER": "midtrans"},
         "GATEWAY_MIDTRANS_SERVER_KEY: required with GATEWAY_PROVIDER=midtrans"),
        ({"GATEWAY_PROVIDER": "otomatis", "GATEWAY_OTOMATIS_USERNAME": "toko"},
         "GATEWAY_OTOMATIS_API_KEY: required with GATEWAY_PROVIDER=otomatis"),
        ({"GATEWAY_PROVIDER": "otomatis", "GATEWAY_OTOMATIS_USERNAME": "toko",
          "GATEWAY_OTOMATIS_API_KEY": "uuid"},
         "GATEWAY_OTOMATIS_CLIENT: required with GATEWAY_PROVIDER=otomatis"),
        ({"GATEWAY_PROVIDER": "otomatis", "GATEWAY_OTOMATIS_USERNAME": "toko",
          "GATEWAY_OTOMATIS_API_KEY": "uuid", "GATEWAY_OTOMATIS_CLIENT": "toko-tonton"},
         "GATEWAY_OTOMATIS_CLIENT_KEY: required with GATEWAY_PROVIDER=otomatis"),
        ({"GATEWAY_MIDTRANS_ACQUIRER": "shopeepay"},
         "GATEWAY_MIDTRANS_ACQUIRER: must be one of gopay, airpay shopee"),
        ({"GATEWAY_TRIPAY_METHOD": "qris"}, "GATEWAY_TRIPAY_METHOD: must be one of QRIS,"),
        ({"GATEWAY_TRIPAY_CUSTOMER_EMAIL": "penonton"},
         "GATEWAY_TRIPAY_CUSTOMER_EMAIL: must be an email address"),
        ({"GATEWAY_PROVIDER": "xendit", "GATEWAY_XENDIT_SECRET_KEY": "xnd_development_x"},
         "GATEWAY_XENDIT_CALLBACK_TOKEN: required with GATEWAY_PROVIDER=xendit"),
        ({"GATEWAY_PROVIDER": "tripay", "GATEWAY_TRIPAY_API_KEY": "DEV-x",
          "GATEWAY_TRIPAY_PRIVATE_KEY": "p"},
         "GATEWAY_TRIPAY_MERCHANT_CODE: required with GATEWAY_PROVIDER=tripay"),
        ({"GATEWAY_PROVIDER": "midtrans", "GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid server"},
         "GATEWAY_MIDTRANS_SERVER_KEY: must be 1 to 256 printable characters"),
        ({"GATEWAY_PROVIDER_URL": "api.sandbox.midtrans.com"},
         "GATEWAY_PROVIDER_URL: must be an http:// or https:// URL"),
        ({"GATEWAY_PROVIDER_TIMEOUT_SECONDS": "0"}, "GATEWAY_PROVIDER_TIMEOUT_SECONDS: must be"),
        ({"GATEWAY_MIDTRANS_SEVER_KEY": "x"}, "GATEWAY_MIDTRANS_SEVER_KEY: unknown setting"),
        ({**TRIPAY_SANDBOX, "GATEWAY_PAYMENT_WINDOW_SECONDS": "300"},
         "GATEWAY_PAYMENT_WINDOW_SECONDS: must be from 600 to 3600 (seconds) with "
         "GATEWAY_PROVIDER=tripay and GATEWAY_TRIPAY_METHOD=QRIS"),
        ({**TRIPAY_SANDBOX, "GATEWAY_PAYMENT_WINDOW_SECONDS": "7200"},
         "GATEWAY_PAYMENT_WINDOW_SECONDS: must be from 600 to 3600 (seconds)"),
        ({**TRIPAY_SANDBOX, "GATEWAY_PAYMENT_WINDOW_SECONDS": "599",
          "GATEWAY_TRIPAY_METHOD": "QRIS2"},
         "GATEWAY_PAYMENT_WINDOW_SECONDS: must be from 600 to 86400 (seconds)"),
        ({**{k: v for k, v in TRIPAY_SANDBOX.items() if k != "GATEWAY_TRIPAY_CUSTOMER_EMAIL"},
          "GATEWAY_PUBLIC_URL": "http://127.0.0.1:8080"},
         "GATEWAY_TRIPAY_CUSTOMER_EMAIL: required with GATEWAY_PROVIDER=tripay unless "
         "GATEWAY_PUBLIC_URL names your domain"),
        # Sandbox and production never meet.
        ({"GATEWAY_PROVIDER": "midtrans", "GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid-server-x"},
         "GATEWAY_MIDTRANS_SERVER_KEY: a sandbox key (SB-Mid-server-...) with "
         "GATEWAY_PROVIDER_URL unset (the production API https://api.midtrans.com)"),
        ({"GATEWAY_PROVIDER": "midtrans", "GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid-server-x",
          "GATEWAY_PROVIDER_URL": "https://API.midtrans.com/"},
         "GATEWAY_MIDTRANS_SERVER_KEY: a sandbox key (SB-Mid-server-...) with "
         "GATEWAY_PROVIDER_URL=https://API.midtrans.com; use "
         "GATEWAY_PROVIDER_URL=https://api.sandbox.midtrans.com or the production key"),
        ({"GATEWAY_PROVIDER": "midtrans", "GATEWAY_MIDTRANS_SERVER_KEY": "Mid-server-x",
          "GATEWAY_PROVIDER_URL": "https://api.sandbox.midtrans.com"},
         "GATEWAY_MIDTRANS_SERVER_KEY: a production key with "
         "GATEWAY_PROVIDER_URL=https://api.sandbox.midtrans.com; use the sandbox key "
         "(SB-Mid-server-...) or unset GATEWAY_PROVIDER_URL"),
        ({**TRIPAY_SANDBOX, "GATEWAY_PROVIDER_URL": "https://tripay.co.id/api"},
         "GATEWAY_TRIPAY_API_KEY: a sandbox key (DEV-...) with "
         "GATEWAY_PROVIDER_URL=https://tripay.co.id/api;"),
        # Tripay's host without its API's path: every call would miss the API.
        ({**TRIPAY_SANDBOX, "GATEWAY_PROVIDER_URL": "https://tripay.co.id"},
         "GATEWAY_PROVIDER_URL: https://tripay.co.id is not tripay's API; use "
         "https://tripay.co.id/api-sandbox (sandbox) or unset it"),
        ({**TRIPAY_SANDBOX, "GATEWAY_PROVIDER_URL": "https://tripay.co.id/api/"},
         "GATEWAY_TRIPAY_API_KEY: a sandbox key (DEV-...) with"),
        ({**TRIPAY_SANDBOX, "GATEWAY_PROVIDER_URL": None},
         "GATEWAY_TRIPAY_API_KEY: a sandbox key (DEV-...) with GATEWAY_PROVIDER_URL unset"),
        ({**TRIPAY_SANDBOX, "GATEWAY_TRIPAY_API_KEY": "live-key"},
         "GATEWAY_TRIPAY_API_KEY: a production key with "
         "GATEWAY_PROVIDER_URL=https://tripay.co.id/api-sandbox"),
        ({"GATEWAY_SECRET": "short"}, "GATEWAY_SECRET: must be at least 32 characters"),
        ({"GATEWAY_API_KEY": "abc"}, "GATEWAY_API_KEY: must be at least 24 characters"),
        ({"GATEWAY_PUBLIC_URL": "ftp://x"}, "GATEWAY_PUBLIC_URL: must be an http"),
        ({"GATEWAY_MERCHANT_NAME": "X" * 26}, "GATEWAY_MERCHANT_NAME: must be 1 to 25"),
        ({"GATEWAY_MERCHANT_PAN": "9360000000000001"}, "GATEWAY_MERCHANT_PAN: must be a QRIS"),
        ({"GATEWAY_ACESS_SECONDS": "60"}, "GATEWAY_ACESS_SECONDS: unknown setting"),
        ({"GATEWAY_STORE": "redis://localhost:6379/zero"}, "GATEWAY_STORE: not a Redis URL"),
        ({"GATEWAY_STORE": "redis://:6379/0"}, "GATEWAY_STORE: not a Redis URL"),
        ({"GATEWAY_STORE": "redis://localhost:99999/0"}, "GATEWAY_STORE: not a Redis URL"),
        ({"GATEWAY_STORE": "redis://localhost:6379/0"},
         "GATEWAY_SECRET: must be set when instances share a Redis store"),
        ({"GATEWAY_REDIS_KEY_PREFIX": "a b"}, "GATEWAY_REDIS_KEY_PREFIX: must be 1-64"),
        # Settings that would lose money: a late payment must still find its session.
        ({"GATEWAY_UNPAID_RETENTION_SECONDS": "0"},
         "GATEWAY_UNPAID_RETENTION_SECONDS: must be at least the payment window plus a day"),
        ({"GATEWAY_UNPAID_RETENTION_SECONDS": "87599"},
         "GATEWAY_UNPAID_RETENTION_SECONDS: must be at least the payment window plus a day"),
        ({"GATEWAY_FRAME_ANCESTORS": "<script>"}, "GATEWAY_FRAME_ANCESTORS: must be a"),
        ({"GATEWAY_BODY_TIMEOUT_SECONDS": "²"}, "GATEWAY_BODY_TIMEOUT_SECONDS: must be a whole"),
        ({"GATEWAY_SUPPORT_URL": "javascript:alert(1)"}, "GATEWAY_SUPPORT_URL: must be"),
        ({"GATEWAY_SUPPORT_URL": "mailto:nobody"}, "GATEWAY_SUPPORT_URL: must be mailto:"),
        ({"GATEWAY_TERMS_URL": "mailto:a@b.id"}, "GATEWAY_TERMS_URL: must be an http"),
        ({"GATEWAY_TERMS_URL": "https://x.id/a b"}, "GATEWAY_TERMS_URL: must be an http"),
        ({"GATEWAY_STREAM_OFFLINE_AFTER_SECONDS": "0"},
         "GATEWAY_STREAM_OFFLINE_AFTER_SECONDS: must be from 1"),
        ({"GATEWAY_MAX_DEVICES": "two"}, "GATEWAY_MAX_DEVICES: must be a whole number"),
        ({"GATEWAY_DELIVERY": "cdn"}, "GATEWAY_DELIVERY: must be one of gate, keys; got 'cdn'"),
        ({"GATEWAY_KEY_ROTATION_SECONDS": "0"},
         "GATEWAY_KEY_ROTATION_SECONDS: must be from 1 to 86400, got 0 (seconds)"),
        ({"GATEWAY_TRUSTED_PROXIES": "10.0.0.1, nginx"},
         "GATEWAY_TRUSTED_PROXIES: not an address or CIDR: 'nginx'"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str | None],
                                     message: str) -> None:
    given = {name: value for name, value in env.items() if value is not None}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path), **given})
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_the_service_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_ACCESS_SECONDS": "soon"}
    result = subprocess.run([sys.executable, "-m", "gateway", "serve"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gateway: configuration error: GATEWAY_ACCESS_SECONDS: must be a whole number "
        "from 5 to 2592000, got 'soon' (seconds)"]


def test_a_broken_catalog_names_the_file_and_stream(tmp_path: Path) -> None:
    catalog = tmp_path / "streams.toml"
    catalog.write_text('[[stream]]\nid = "x"\ntitle = "X"\nprice = 1.5\norigin = "file:./"\n')
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_STREAMS": str(catalog)}
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"gateway: configuration error: {catalog}: stream #1: x: price must be whole "
        "rupiah, 1 to 10000000")


def test_a_shared_redis_store_with_shared_secrets(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_STORE": "rediss://cache.internal:6380/2",
        "GATEWAY_SECRET": "s" * 40, "GATEWAY_WEBHOOK_SECRET": "w" * 40,
        "GATEWAY_REDIS_KEY_PREFIX": "pay-gate:prod:"})
    assert settings.store_url == "rediss://cache.internal:6380/2"
    assert settings.redis_key_prefix == "pay-gate:prod:"
    assert not (tmp_path / "secret").exists()  # nothing generated per instance


def test_footer_links_are_optional_and_kept_as_given(tmp_path: Path) -> None:
    base = {"GATEWAY_VAR_DIR": str(tmp_path)}
    unset = Settings.from_env(base)
    assert (unset.support_url, unset.terms_url) == (None, None)
    given = Settings.from_env({**base, "GATEWAY_SUPPORT_URL": "mailto:bantuan@tonton.id",
                               "GATEWAY_TERMS_URL": "https://tonton.id/syarat"})
    assert (given.support_url, given.terms_url) == ("mailto:bantuan@tonton.id",
                                                    "https://tonton.id/syarat")


def test_a_real_provider_is_configured_by_its_own_variables(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_PROVIDER": "midtrans",
        "GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid-server-abc",
        "GATEWAY_PROVIDER_URL": "https://api.sandbox.midtrans.com/",
        # Another provider's key, staged for a switch: known, and not kept.
        "GATEWAY_TRIPAY_API_KEY": "DEV-staged"})
    assert settings.provider == "midtrans"
    assert settings.provider_url == "https://api.sandbox.midtrans.com"
    assert settings.provider_credentials == {"GATEWAY_MIDTRANS_SERVER_KEY": "SB-Mid-server-abc"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_is_one_adapter_chosen_by_name(tmp_path: Path, provider: str) -> None:
    env = {"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_PROVIDER": provider,
           "GATEWAY_STREAMS": str(catalog_priced(tmp_path, 25_000)),
           "GATEWAY_PUBLIC_URL": "https://tonton.example.id"}
    env.update({name: f"key-for-{name.lower()}" for name in PROVIDER_VARIABLES[provider]})
    adapter = make_provider(Settings.from_env(env), lambda: 0)
    assert adapter.name == provider
    assert type(adapter).__module__ == f"gateway.providers.{provider}"


def test_trusted_proxies_are_addresses_and_networks(tmp_path: Path) -> None:
    settings = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path),
                                  "GATEWAY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"})
    assert [str(network) for network in settings.trusted_proxies] == [
        "127.0.0.1/32", "10.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(("key", "url"), [
    ("SB-Mid-server-abc", "https://api.sandbox.midtrans.com"),
    ("Mid-server-abc", None),
    ("Mid-server-abc", "https://api.midtrans.com"),
    # A local fake (or a proxy) is neither sandbox nor production: either key goes.
    ("SB-Mid-server-abc", "http://127.0.0.1:8099"),
    ("Mid-server-abc", "http://127.0.0.1:8099"),
    ("Mid-server-abc", "http://localhost:8099/"),
])
def test_a_key_goes_with_its_own_kind_of_api_or_a_local_fake(
        tmp_path: Path, key: str, url: str | None) -> None:
    env = {"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_PROVIDER": "midtrans",
           "GATEWAY_MIDTRANS_SERVER_KEY": key}
    settings = Settings.from_env(env | ({"GATEWAY_PROVIDER_URL": url} if url else {}))
    assert settings.credential("GATEWAY_MIDTRANS_SERVER_KEY") == key


def test_xendit_has_one_host_for_test_and_live_keys(tmp_path: Path) -> None:
    for key in ("xnd_development_abc", "xnd_production_abc"):
        settings = Settings.from_env({
            "GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_PROVIDER": "xendit",
            "GATEWAY_XENDIT_SECRET_KEY": key, "GATEWAY_XENDIT_CALLBACK_TOKEN": "token"})
        assert settings.provider_url is None


def test_the_midtrans_acquirer_and_tripay_method_are_chosen(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "GATEWAY_VAR_DIR": str(tmp_path), **TRIPAY_SANDBOX, "GATEWAY_TRIPAY_METHOD": "QRISC",
        "GATEWAY_PAYMENT_WINDOW_SECONDS": "7200", "GATEWAY_MIDTRANS_ACQUIRER": "airpay shopee"})
    assert (settings.tripay_method, settings.midtrans_acquirer) == ("QRISC", "airpay shopee")
    defaults = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path)})
    assert (defaults.tripay_method, defaults.midtrans_acquirer) == ("QRIS", "gopay")


def test_tripays_customer_email_is_the_merchants(tmp_path: Path) -> None:
    """Given, or no-reply@ the public URL's host: never a viewer's."""
    without = {k: v for k, v in TRIPAY_SANDBOX.items() if k != "GATEWAY_TRIPAY_CUSTOMER_EMAIL"}
    derived = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path), **without,
                                 "GATEWAY_PUBLIC_URL": "https://tonton.example.id"})
    assert derived.tripay_customer_email == "no-reply@tonton.example.id"
    given = Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path), **TRIPAY_SANDBOX,
                               "GATEWAY_PUBLIC_URL": "https://tonton.example.id"})
    assert given.tripay_customer_email == "no-reply@tonton.example.id"
    assert make_provider(given, lambda: 0).name == "tripay"


@pytest.mark.parametrize(("env", "prices", "message"), [
    (OTOMATIS, (25_000, 9_999),
     "GATEWAY_STREAMS: stream 'show-1' costs Rp9.999, outside otomatis's minimum of "
     "Rp10.000"),
    (TRIPAY_SANDBOX, (999,), "GATEWAY_STREAMS: stream 'show-0' costs Rp999, outside "
                             "tripay's minimum of Rp1.000"),
    (TRIPAY_SANDBOX, (5_000_001,), "GATEWAY_STREAMS: stream 'show-0' costs Rp5.000.001, "
                                   "outside tripay's maximum of Rp5.000.000"),
])
def test_a_price_the_provider_refuses_stops_start_up(
        tmp_path: Path, env: dict[str, str], prices: tuple[int, ...], message: str) -> None:
    streams = {"GATEWAY_STREAMS": str(catalog_priced(tmp_path, *prices))}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path), **env, **streams})
    assert str(raised.value).startswith(message)
    accepted = catalog_priced(tmp_path, 10_000, 25_000)
    Settings.from_env({"GATEWAY_VAR_DIR": str(tmp_path), **env,
                       "GATEWAY_STREAMS": str(accepted)})


def test_otomatis_with_the_demo_catalog_refuses_to_start_with_one_line(
        tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path), **OTOMATIS}
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "gateway: configuration error: GATEWAY_STREAMS: stream 'demo' costs Rp1.000, "
        "outside otomatis's minimum of Rp10.000 for a QRIS payment")
