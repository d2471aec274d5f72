"""Prometheus metrics for operators, served at GET /metrics (with the API key).

Rare events (payment sessions, notifications, status changes, gate refusals) are
counted where they happen. Figures of the hot path (requests through the gate, the
segment cache, upstream fetches, open sockets) are read when Prometheus scrapes, from
the objects that keep them anyway: a segment request pays one integer increment for
being measured, not a labelled counter's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.model import PaymentSession

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        # One registry per app, not the process-global one: two apps in one process
        # (tests, or an embedding) must not share or clash on counters.
        self.registry = CollectorRegistry()
        self.sessions_created = Counter(
            "gateway_payment_sessions_created", "Payment sessions (QRIS codes) created.",
            registry=self.registry)
        self.notifications = Counter(
            "gateway_notifications", "Authentic provider notifications stored, by outcome.",
            ["reason", "applied"], registry=self.registry)
        self.notifications_rejected = Counter(
            "gateway_notifications_rejected",
            "Callbacks refused with 401 and not stored (not authentic, or replayed).",
            ["reason"], registry=self.registry)
        self.status_changes = Counter(
            "gateway_session_status_changes",
            "Session status changes heard by this instance (its own and, with a shared "
            "store, other instances').", ["status"], registry=self.registry)
        self.gate_refusals = Counter(
            "gateway_gate_refusals", "HLS requests refused by the access check (403).",
            ["reason"], registry=self.registry)
        self.reconcile_questions = Counter(
            "gateway_reconcile_questions",
            "Status questions asked of the provider about unpaid sessions, by outcome "
            "(paid, pending, ended, cancelled, failed).", ["outcome"], registry=self.registry)
        # With a shared store: is this instance hearing the others' status changes?
        self.change_feed_up: bool | None = None

    def session_changed(self, session: PaymentSession) -> None:
        """A status listener."""
        self.status_changes.labels(session.status.value).inc()

    def watch(self, read_figures: Callable[[], dict[str, float]]) -> None:
        """Expose live figures, read at scrape time: `read_figures` returns them by
        name (see `_LiveFigures`)."""
        self.registry.register(_LiveFigures(self, read_figures))

    def render(self) -> bytes:
        return generate_latest(self.registry)


# name -> (kind, help). Counters get "_total" appended on exposition.
LIVE_FIGURES: dict[str, tuple[str, str]] = {
    "gateway_gate_granted": ("counter", "HLS requests that passed the access check."),
    "gateway_upstream_fetches": ("counter", "Requests made to HTTP origins."),
    "gateway_upstream_coalesced": (
        "counter", "Viewer requests that joined an upstream fetch already under way."),
    "gateway_segment_cache_bytes": ("gauge", "Bytes held by the gate's memory cache."),
    "gateway_segment_cache_objects": ("gauge", "Objects held by the gate's memory cache."),
    "gateway_segment_cache_limit_bytes": ("gauge", "The cache's configured size limit."),
    "gateway_websockets": ("gauge", "Open status WebSockets."),
    "gateway_watched_sessions": ("gauge", "Sessions watched by at least one WebSocket."),
    "gateway_ended_sessions": (
        "gauge", "Sessions ended early whose tokens the gate refuses until they expire."),
    "gateway_device_reports": (
        "counter", "Times the gate asked the store about a playing device (new or renewed)."),
    # GATEWAY_DELIVERY=keys only. Key requests granted are in gateway_gate_granted.
    "gateway_keys_segments_encrypted": (
        "counter", "Keys delivery: segments encrypted (once each per instance, then kept)."),
    "gateway_keys_playlists_rewritten": (
        "counter", "Keys delivery: playlists rewritten (once per change of the origin's)."),
}


class _LiveFigures(Collector):
    def __init__(self, metrics: Metrics, read_figures: Callable[[], dict[str, float]]) -> None:
        self._metrics = metrics
        self._read_figures = read_figures

    def collect(self) -> Iterator[Metric]:
        if self._metrics.change_feed_up is not None:
            yield GaugeMetricFamily(
                "gateway_store_change_feed_up",
                "1 while this instance is subscribed to the shared store's status changes.",
                value=1 if self._metrics.change_feed_up else 0)
        for name, value in self._read_figures().items():
            kind, help_text = LIVE_FIGURES[name]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=value)
