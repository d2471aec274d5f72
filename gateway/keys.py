"""Every piece of application and request state, behind typed keys, in one place."""

from __future__ import annotations

import asyncio
import collections
import weakref

import aiohttp
from aiohttp import web

from gateway.catalog import Catalog
from gateway.clock import Clock
from gateway.delivery.service import KeysDelivery
from gateway.devices import Devices
from gateway.forwarding import UntrustedForwarding
from gateway.gate.hls_gate import HlsGate
from gateway.identity import IdentityResolver, Viewer
from gateway.limits import SessionCreationLimits
from gateway.line import LineWatchers, QrLine
from gateway.metrics import Metrics
from gateway.operators import ConsoleSignIns, OperatorAuth, SignInThrottle
from gateway.providers.base import Provider
from gateway.qr_image import QrImages
from gateway.reconcile import Reconciler
from gateway.refunds import RefundService
from gateway.reports import Reports
from gateway.sessions import SessionService
from gateway.settings import Settings
from gateway.status_hub import StatusHub
from gateway.store.base import Store
from gateway.stream_health import StreamHealth

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
CATALOG = web.AppKey("catalog", Catalog)
PROVIDER = web.AppKey("provider", Provider)
IDENTITY = web.AppKey("identity", IdentityResolver)
QR_IMAGES = web.AppKey("qr_images", QrImages)
GATE = web.AppKey("gate", HlsGate)  # access, origins, cache, playback URLs: all of it
STATUS_HUB = web.AppKey("status_hub", StatusHub)
WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])
WEBSOCKETS_PER_VIEWER = web.AppKey("websockets_per_viewer", collections.Counter[str])
METRICS = web.AppKey("metrics", Metrics)
HLS_JS_URL = web.AppKey("hls_js_url", str)  # "" when hls.js is not installed
# The operator's console; only with GATEWAY_API_KEY set.
OPERATOR_AUTH = web.AppKey("operator_auth", OperatorAuth)
SIGN_IN_THROTTLE = web.AppKey("sign_in_throttle", SignInThrottle)
CONSOLE_SIGN_INS = web.AppKey("console_sign_ins", ConsoleSignIns)  # opened with the store
SWAGGER_UI_URL = web.AppKey("swagger_ui_url", str)  # "" when Swagger UI is not installed
OPENAPI = web.AppKey("openapi", bytes)  # the document, encoded once
# Forwarding headers from a peer not in GATEWAY_TRUSTED_PROXIES, noticed (forwarding.py).
UNTRUSTED_FORWARDING = web.AppKey("untrusted_forwarding", UntrustedForwarding)
# " https://img.example" ...: the hosts of the catalog's poster URLs, for img-src.
POSTER_ORIGINS = web.AppKey("poster_origins", str)
# Set by the cleanup contexts in resources.py, which own their lifetimes.
STORE = web.AppKey("store", Store)  # read by resources.py and the readiness check only
SESSIONS = web.AppKey("sessions", SessionService)
REPORTS = web.AppKey("reports", Reports)  # what operators read: the console, API listings
REFUNDS = web.AppKey("refunds", RefundService)  # money back, cancelled shows
REFUNDS_TASK = web.AppKey("refunds_task", asyncio.Task[None])
LIMITS = web.AppKey("limits", SessionCreationLimits)
# The line of buyers waiting for a QR, its drain task, and its WebSockets (line.py).
LINE = web.AppKey("line", QrLine)
LINE_TASK = web.AppKey("line_task", asyncio.Task[None])
LINE_WATCHERS = web.AppKey("line_watchers", LineWatchers)
LINE_WATCHERS_TASK = web.AppKey("line_watchers_task", asyncio.Task[None])
DEVICES = web.AppKey("devices", Devices)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
SWEEPER = web.AppKey("sweeper", asyncio.Task[None])
STATUS_SENDER = web.AppKey("status_sender", asyncio.Task[None])
# Per stream: is its origin up, how old is its newest segment (stream_health.py).
STREAM_HEALTH = web.AppKey("stream_health", StreamHealth)
STREAM_WATCHER = web.AppKey("stream_watcher", asyncio.Task[None])
RECONCILER = web.AppKey("reconciler", Reconciler)  # real providers only
RECONCILE_TASK = web.AppKey("reconcile_task", asyncio.Task[None])
CHANGE_FOLLOWER = web.AppKey("change_follower", asyncio.Task[None])  # shared stores only
# GATEWAY_DELIVERY=keys only: encrypted media for anyone, keys for viewers with access.
KEYS_DELIVERY = web.AppKey("keys_delivery", KeysDelivery)

VIEWER = web.RequestKey("viewer", Viewer)
