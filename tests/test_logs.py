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


class CountingStream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


async def test_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    import asyncio

    from gateway.logs import LoopBatchedHandler

    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gateway.test.batched")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for index in range(50):
            logger.warning("line", extra={"event_fields": {"n": index}})
        assert stream.writes == []  # not yet: the loop has not turned
        await asyncio.sleep(0)
        assert len(stream.writes) == 1
        lines = stream.writes[0].splitlines()
        assert [json.loads(line)["n"] for line in lines] == list(range(50))
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_outside_a_loop_lines_are_written_at_once() -> None:
    from gateway.logs import LoopBatchedHandler

    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.handle(logging.LogRecord("gateway", logging.INFO, __file__, 1, "started", None,
                                     None))
    assert len(stream.writes) == 1 and json.loads(stream.writes[0])["event"] == "started"
