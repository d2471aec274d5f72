"""`create_app(settings)`: wires the pieces together and does nothing else."""

from __future__ import annotations

from aiohttp import web

from gateway.catalog import Catalog
from gateway.clock import Clock, system_clock_ms
from gateway.identity import IdentityResolver
from gateway.gate.access import AccessGate
from gateway.keys import CATALOG, CLOCK, GATE, IDENTITY, PROVIDER, QR_IMAGES, SETTINGS
from gateway.middlewares import error_middleware, set_viewer_cookie
from gateway.providers import make_provider
from gateway.qr_image import QrImages
from gateway.resources import gate_ctx, http_client_ctx, store_ctx, sweeper_ctx
from gateway.routes import setup_routes
from gateway.settings import Settings


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
    app[GATE] = AccessGate(settings.secret, settings.previous_secrets, clock,
                           access_seconds=settings.access_seconds)
    app.on_response_prepare.append(set_viewer_cookie)
    app.cleanup_ctx.extend([store_ctx, http_client_ctx, gate_ctx, sweeper_ctx])
    setup_routes(app, simulator_enabled=settings.provider == "simulator")
    return app
