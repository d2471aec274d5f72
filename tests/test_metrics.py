"""GET /metrics: what an operator's Prometheus sees after real traffic."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, FakeClock, ViewerClient
from tests.handlers.test_payment_callback import signed

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: ViewerClient, **headers: str) -> Samples:
    async with client.http.get("/metrics", headers=headers or {"X-Api-Key": API_KEY}) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "Set-Cookie" not in reply.headers  # a scraper is nobody's viewer
        text = await reply.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong-key-0123456789abcdef"},
                                     {"Authorization": "Bearer wrong"}])
async def test_only_an_operator_may_scrape(viewer: ViewerClient,
                                           headers: dict[str, str]) -> None:
    async with viewer.http.get("/metrics", headers=headers) as reply:
        assert reply.status == 401
        assert (await reply.json())["code"] == "unauthenticated"
        assert "Set-Cookie" not in reply.headers


async def test_prometheus_can_use_the_api_key_as_a_bearer_token(viewer: ViewerClient) -> None:
    samples = await scrape(viewer, Authorization=f"Bearer {API_KEY}")
    assert samples[("gateway_gate_granted_total", ())] == 0


async def test_traffic_shows_up_in_the_figures(viewer: ViewerClient, other_viewer: ViewerClient,
                                               clock: FakeClock) -> None:
    qr = await viewer.generate_qris()
    await viewer.generate_qris(expect=200)  # the same session again: not a new one
    await viewer.pay(qr["trxId"])
    raw, headers = signed({"eventId": "forged", "trxId": qr["trxId"], "amount": 1000,
                           "status": "paid"}, clock() // 1000, secret="x" * 40)
    async with viewer.http.post("/api/payment-callback", data=raw, headers=headers) as reply:
        assert reply.status == 401
    access = await viewer.check_access("demo", qr["sessionId"])
    for _ in range(3):
        async with viewer.http.get(access["tokenPlaybackUrl"]) as reply:
            assert reply.status == 200
    async with other_viewer.http.get(access["playbackUrl"]) as reply:  # no cookie
        assert reply.status == 403
    async with viewer.http.ws_connect(f"/ws?sessionId={qr['sessionId']}") as socket:
        await socket.receive_json()
        samples = await scrape(viewer)

    assert samples[("gateway_payment_sessions_created_total", ())] == 1
    assert samples[("gateway_notifications_total",
                    (("applied", "true"), ("reason", "paid")))] == 1
    assert samples[("gateway_notifications_rejected_total", (("reason", "bad signature"),))] == 1
    assert samples[("gateway_session_status_changes_total", (("status", "paid"),))] == 1
    assert samples[("gateway_gate_granted_total", ())] == 3
    assert samples[("gateway_gate_refusals_total", (("reason", "no token"),))] == 1
    assert samples[("gateway_websockets", ())] == 1
    assert samples[("gateway_watched_sessions", ())] == 1
    assert samples[("gateway_segment_cache_limit_bytes", ())] == 64 * 1024 * 1024
