"""`create_app(settings)`: wires the pieces together and does nothing else."""

from __future__ import annotations

import collections
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp_jinja2
import jinja2
import msgspec
from aiohttp import web

from gateway.catalog import Catalog
from gateway.clock import Clock, system_clock_ms
from gateway.forwarding import UntrustedForwarding
from gateway.gate.hls_gate import HlsGate
from gateway.i18n import rupiah
from gateway.identity import IdentityResolver
from gateway.keys import (
    CATALOG,
    CLOCK,
    GATE,
    HLS_JS_URL,
    IDENTITY,
    METRICS,
    OPENAPI,
    OPERATOR_AUTH,
    POSTER_ORIGINS,
    PROVIDER,
    QR_IMAGES,
    SETTINGS,
    SIGN_IN_THROTTLE,
    STATUS_HUB,
    SWAGGER_UI_URL,
    UNTRUSTED_FORWARDING,
    WEBSOCKETS,
    WEBSOCKETS_PER_VIEWER,
)
from gateway.ledger import local_time
from gateway.logs import quiet_malformed_requests
from gateway.metrics import Metrics
from gateway.middlewares import error_middleware
from gateway.openapi import document
from gateway.operators import OperatorAuth, SignInThrottle
from gateway.providers import make_provider
from gateway.qr_image import QrImages
from gateway.resources import (
    close_websockets,
    gate_ctx,
    http_client_ctx,
    keys_delivery_ctx,
    line_ctx,
    metrics_ctx,
    provider_ctx,
    reconciler_ctx,
    refunds_ctx,
    status_hub_ctx,
    store_changes_ctx,
    store_ctx,
    stream_health_ctx,
    sweeper_ctx,
)
from gateway.routes import setup_routes
from gateway.settings import PROJECT_DIR, Settings
from gateway.status_hub import StatusHub


def url_across(root: web.Application) -> Callable[..., str]:
    """aiohttp_jinja2's `url()` for templates, finding a route in the application that
    renders (the console is a sub-application with its own table) or else in the root's:
    the console's pages share the site's layout and its links."""

    @jinja2.pass_context
    def url(context: Mapping[str, Any], name: str, query_: Mapping[str, str] | None = None,
            **parts: object) -> str:
        app: web.Application = context["app"]
        router = app.router if name in app.router else root.router
        found = router[name].url_for(**{key: str(value) for key, value in parts.items()})
        return str(found.with_query(query_) if query_ else found)

    return url


def create_app(settings: Settings, *, clock: Clock = system_clock_ms) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[CATALOG] = Catalog.load(settings.streams_path)
    app[PROVIDER] = make_provider(settings, clock)
    app[IDENTITY] = IdentityResolver(settings, clock)
    app[QR_IMAGES] = QrImages()
    app[STATUS_HUB] = StatusHub(clock)
    app[WEBSOCKETS] = weakref.WeakSet()
    app[WEBSOCKETS_PER_VIEWER] = collections.Counter()
    app[METRICS] = Metrics()
    app[UNTRUSTED_FORWARDING] = UntrustedForwarding()
    if settings.api_key is not None:
        app[OPERATOR_AUTH] = OperatorAuth(settings.api_key, settings.secret,
                                          settings.previous_secrets, clock)
        app[SIGN_IN_THROTTLE] = SignInThrottle(clock)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(PROJECT_DIR / "templates"),
                         filters={"rupiah": rupiah, "local_time": local_time})
    app[aiohttp_jinja2.static_root_key] = "/static"
    quiet_malformed_requests()
    app.on_shutdown.append(close_websockets)
    # Opened in this order, closed in reverse. The store first: it makes the
    # SessionService and registers its status listeners, and everything after uses it.
    # The HTTP client before the gate, whose HTTP origins fetch through it. The gate
    # (reloading sessions ended early) and the status hub's sender before the change
    # feed, whose catch-up feeds both. The sweeper last, so the changes it makes find
    # every listener running; it stops first at shutdown, the store closes last.
    # The provider opens on the HTTP client; the reconciler, which records payments as
    # notifications do, starts last, like the sweeper, so every listener hears it. The
    # stream health watcher needs only the HTTP client. Keys delivery (if on) right after
    # the gate, whose origins and memory cache it uses; metrics after it, to read it.
    app.cleanup_ctx.extend([store_ctx, http_client_ctx, provider_ctx, gate_ctx,
                            keys_delivery_ctx, stream_health_ctx, status_hub_ctx,
                            store_changes_ctx, line_ctx, metrics_ctx, sweeper_ctx,
                            reconciler_ctx, refunds_ctx])
    simulator_enabled = settings.provider == "simulator"
    keys_delivery = settings.delivery == "keys"
    setup_routes(app, simulator_enabled=simulator_enabled,
                 console_enabled=settings.api_key is not None, keys_delivery=keys_delivery)
    aiohttp_jinja2.get_env(app).globals["url"] = url_across(app)
    if settings.public_url:
        # Sent to providers that take a notification URL per transaction.
        app[PROVIDER].callback_url = (
            settings.public_url + str(app.router["payment-callback"].url_for()))
    app[GATE] = HlsGate(settings, app[CATALOG], clock, app[METRICS])
    app[HLS_JS_URL] = str(app.router["hls-js"].url_for()) if "hls-js" in app.router else ""
    app[SWAGGER_UI_URL] = ("/vendor/swagger-ui/" if "swagger-ui" in app.router else "")
    app[OPENAPI] = msgspec.json.encode(document(simulator_enabled=simulator_enabled,
                                                keys_delivery=keys_delivery))
    app[POSTER_ORIGINS] = app[CATALOG].poster_origins()
    return app
