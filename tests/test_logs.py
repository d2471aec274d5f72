"""One structured line per payment state change and per access decision, with the ids
an operator searches by, and never a secret or a whole token."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import JsonFormatter
from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET, ViewerClient


async def test_a_purchase_leaves_a_searchable_trail(viewer: ViewerClient,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"])
    await viewer.check_access("demo", qr["sessionId"])

    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records
             if record.name.startswith("gateway")]
    by_event = {line["event"]: line for line in lines}
    for event in ("session_created", "notification_recorded", "payment_applied",
                  "access_decision"):
        assert by_event[event]["sessionId"] == qr["sessionId"], event
        assert by_event[event]["trxId"] == qr["trxId"], event
    assert by_event["session_created"]["streamId"] == "demo"
    assert by_event["payment_applied"]["status"] == "paid"
    assert by_event["access_decision"]["granted"] is True

    cookie = viewer.http.session.cookie_jar.filter_cookies(viewer.http.make_url("/"))["viewer"]
    everything = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for secret in (SECRET, WEBHOOK_SECRET, API_KEY, cookie.value, qr["qrString"]):
        assert secret not in everything
