"""The route table: every URL the service answers, named, in one place."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from gateway.delivery import urls as delivery_urls
from gateway.gate import urls
from gateway.handlers import (
    admin,
    api,
    docs,
    edge,
    health,
    hls,
    media,
    metrics,
    pages,
    qr,
    refunds,
    simulator,
    ws,
)
from gateway.media_routes import add_media_route
from gateway.settings import PROJECT_DIR

HLS_JS_FILE = PROJECT_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
SWAGGER_UI_DIR = PROJECT_DIR / "node_modules" / "swagger-ui-dist"
UPLOT_DIR = PROJECT_DIR / "node_modules" / "uplot" / "dist"
CONSOLE_PREFIX = "/admin"


def setup_routes(app: web.Application, *, simulator_enabled: bool,
                 console_enabled: bool, keys_delivery: bool = False) -> None:
    router = app.router
    router.add_get("/", pages.index, name="index")
    router.add_get("/watch/{stream_id}", pages.watch, name="watch")
    router.add_get("/tickets", pages.tickets, name="tickets")
    router.add_get("/tickets/{session_id}", pages.receipt, name="receipt")
    router.add_get("/ws", ws.status_socket, name="ws")
    router.add_static("/static/", PROJECT_DIR / "static", name="static")
    if HLS_JS_FILE.is_file():  # installed from npm by `dev.py serve`; never committed
        router.add_get("/vendor/hls.min.js", _hls_js, name="hls-js")
    if (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():  # npm, like hls.js
        router.add_static("/vendor/swagger-ui/", SWAGGER_UI_DIR, name="swagger-ui")
    router.add_get("/healthz", health.healthz, name="healthz")
    router.add_get("/readyz", health.readyz, name="readyz")
    router.add_get("/metrics", metrics.metrics, name="metrics")
    router.add_get("/api/openapi.json", docs.openapi_json, name="openapi")
    router.add_get("/api/docs", docs.api_docs, name="api-docs")
    router.add_get("/api/streams", api.list_streams, name="api-streams")
    router.add_get("/posters/{stream_id}", api.poster, name="poster")
    router.add_post("/api/generate-qris", api.generate_qris, name="generate-qris")
    router.add_get("/api/payment-callback", api.payment_status, name="payment-status")
    router.add_post("/api/payment-callback", api.payment_notification, name="payment-callback")
    router.add_get("/api/check-access", api.check_access, name="check-access")
    router.add_get("/api/user-sessions", api.list_user_sessions, name="user-sessions")
    router.add_post("/api/user-sessions", api.user_session_for_stream, name="user-session")
    router.add_get("/api/qr/{session_id}.png", qr.qr_png, name="qr-png")
    router.add_get("/api/qr/{session_id}/card.png", qr.qr_card_png, name="qr-card")
    router.add_post("/api/sessions/{session_id}/revoke", api.revoke_session,
                    name="revoke-session")
    router.add_post("/api/watch-here", api.watch_here, name="watch-here")
    router.add_get("/api/sessions/{session_id}/grants", api.list_grants, name="session-grants")
    router.add_post("/api/grants/{grant_id}/end", api.end_grant, name="end-grant")
    router.add_get("/api/notifications", api.list_notifications, name="notifications")
    router.add_get("/api/payments", api.list_payments, name="payments")
    router.add_post("/api/refunds", refunds.request_refund, name="refunds-post")
    router.add_get("/api/refunds", refunds.list_refunds, name="refunds")
    router.add_post("/api/streams/{stream_id}/cancel", refunds.cancel_stream,
                    name="cancel-stream")
    # Media routes answer for themselves, outside the middleware (the hot path), in the
    # order the gate's URL grammar gives.
    for name, pattern in urls.ROUTES:
        add_media_route(router, pattern, name, hls.serve)
    router.add_get("/gate/auth", edge.auth, name="gate-auth")  # nginx's auth_request
    if keys_delivery:  # encrypted media for anyone, keys for viewers with access
        for (name, pattern), handler in zip(delivery_urls.ROUTES, (media.media, media.key),
                                            strict=True):
            add_media_route(router, pattern, name, handler)
    if simulator_enabled:
        router.add_post("/simulator/pay/{trx_id}", simulator.pay, name="simulator-pay")
    if console_enabled:
        _console(app)


def _console(app: web.Application) -> None:
    """The operator's console: a sub-application at /admin whose middleware checks
    sign-in, origin and CSRF for every page and action (handlers/admin.py). Only when
    there is an operator's key to sign in with."""
    console = web.Application(middlewares=[admin.console_guard])
    console[aiohttp_jinja2.static_root_key] = "/static"
    router = console.router
    router.add_get("", admin.dashboard, name="admin")
    router.add_get("/sign-in", admin.sign_in_form, name="admin-signin")
    router.add_post("/sign-in", admin.sign_in, name="admin-signin-post")
    router.add_post("/sign-out", admin.sign_out, name="admin-signout")
    router.add_get("/payments", admin.payments, name="admin-payments")
    router.add_get("/payments.csv", admin.payments_csv, name="admin-payments-csv")
    router.add_post("/payments/{entry_id}/settle", admin.settle, name="admin-settle")
    router.add_get("/sessions", admin.sessions, name="admin-sessions")
    router.add_post("/sessions/{session_id}/revoke", admin.revoke, name="admin-revoke")
    router.add_post("/sessions/{session_id}/grants/{grant_id}/end", admin.end_device,
                    name="admin-end-device")
    router.add_get("/refunds", admin.refunds, name="admin-refunds")
    router.add_post("/refunds", admin.refund, name="admin-refund")
    router.add_post("/refunds/{refund_id}/close", admin.close_refund,
                    name="admin-refund-close")
    router.add_post("/streams/{stream_id}/cancel", admin.cancel_show,
                    name="admin-cancel-show")
    if (UPLOT_DIR / "uPlot.iife.min.js").is_file():  # from npm, like hls.js
        router.add_get("/vendor/uplot/{name:uPlot\\.iife\\.min\\.js|uPlot\\.min\\.css}",
                       _uplot, name="uplot")
    app.add_subapp(CONSOLE_PREFIX, console)


async def _hls_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(HLS_JS_FILE, headers={"Cache-Control": "public, max-age=86400"})


async def _uplot(request: web.Request) -> web.FileResponse:
    return web.FileResponse(UPLOT_DIR / request.match_info["name"],
                            headers={"Cache-Control": "public, max-age=86400"})
