"""What an attacker sends, byte for byte: invalid UTF-8 and lone surrogates in the
query, headers and cookies, Unicode and endless digits, JSON nested thousands deep,
malformed Origin and Host at the WebSocket handshake. Each gets a 4xx (or, for a bad
cookie, the treatment of an unknown viewer), one warning line, never a 500 or a
traceback, and the store exactly as it was."""

from __future__ import annotations

import logging

import pytest

from gateway.settings import Settings
from tests.conftest import API_KEY, ViewerClient, store_snapshot
from tests.raw_http import raw_request

KEY = API_KEY.encode()
WS = (b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
      b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
DEEP = b'{"streamId":"demo","x":' + b"[" * 5000 + b"]" * 5000 + b"}"

# (request head, body, expected status)
CASES: list[tuple[bytes, bytes, int]] = [
    (b"POST /api/generate-qris HTTP/1.1\r\nHost: x", DEEP, 400),
    (b"POST /api/generate-qris HTTP/1.1\r\nHost: x", b'{"streamId":"demo","x":' + b"[" * 40
     + b"]" * 40 + b"}", 400),
    (b"POST /api/user-sessions HTTP/1.1\r\nHost: x", b"[" * 3000, 400),
    (b"POST /api/generate-qris HTTP/1.1\r\nHost: x", b'{"streamId":"demo\xff"}', 400),
    (b"POST /api/generate-qris HTTP/1.1\r\nHost: x", b'{"streamId":"\\ud800"}', 400),
    (b"GET /api/user-sessions?userId=%ED%A0%80 HTTP/1.1\r\nHost: x", b"", 400),
    (b"GET /api/user-sessions?userId=%ff%fe HTTP/1.1\r\nHost: x", b"", 400),
    (b"GET /api/user-sessions HTTP/1.1\r\nHost: x\r\nX-Api-Key: \xed\xa0\x80", b"", 401),
    (b"GET /api/user-sessions HTTP/1.1\r\nHost: x\r\nX-Api-Key: \xff\xfe", b"", 401),
    (b"GET /api/user-sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff", b"", 200),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Api-Key: \xff\xfe", b"", 401),
    (b"GET /metrics?x=%ff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xed\xa0\x80", b"", 401),
    (b"GET /api/notifications?limit=%C2%B2 HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + KEY, b"", 400),
    (b"GET /api/notifications?limit=%D9%A3 HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + KEY, b"", 400),
    (b"GET /api/payments?limit=%C2%B2 HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + KEY, b"", 400),
    (b"GET /api/notifications?limit=" + b"1" * 5000 + b" HTTP/1.1\r\nHost: x\r\nX-Api-Key: "
     + KEY, b"", 400),
    (b"POST /api/payment-callback HTTP/1.1\r\nHost: x\r\nX-Gateway-Signature: t=\xc2\xb2,v1="
     + b"a" * 64, b"{}", 401),
    (b"POST /api/payment-callback HTTP/1.1\r\nHost: x\r\nX-Gateway-Signature: t="
     + b"9" * 5000 + b",v1=" + b"a" * 64, b"{}", 401),
    (b"GET /ws?sessionId=%ff HTTP/1.1\r\nHost: x" + WS + b"\r\nOrigin: http://[::1", b"", 403),
    (b"GET /ws?sessionId=x HTTP/1.1\r\nHost: [zz" + WS + b"\r\nOrigin: http://xn--a.com",
     b"", 403),
    (b"GET /ws?sessionId=x HTTP/1.1\r\nHost: x" + WS + b"\r\nOrigin: http://\xff.com", b"", 403),
    (b"GET /ws?sessionId=x HTTP/1.1\r\nHost: \xed\xa0\x80" + WS + b"\r\nOrigin: http://x",
     b"", 403),
    # aiohttp answers an Expect it does not know itself, echoing it (it failed on bytes).
    *[(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nExpect: " + value, b"", 417)
      for path in (b"/", b"/watch/demo", b"/api/streams", b"/hls/demo/index.m3u8")
      for value in (b"\xff\xfe", b"\xed\xa0\x80", b"nothing-we-know")],
    # The WebSocket handshake's own headers, not text.
    *[(b"GET /ws?sessionId=abcdefghijklmnopqrstuv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket"
       b"\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" + header, b"", 400)
      for header in (b"Sec-WebSocket-Key: \xff\xfe", b"Sec-WebSocket-Key: \xed\xa0\x80==",
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: \xff",
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Extensions: \xff")],
    # A file name no file system takes.
    (b"GET /static/" + b"a" * 300 + b".css HTTP/1.1\r\nHost: x", b"", 404),
    (b"GET /static/" + b"a/" * 3000 + b"b HTTP/1.1\r\nHost: x", b"", 404),
    # Pages that look the viewer up without making a new one.
    *[(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + key, b"", 401)
      for path in (b"/", b"/tickets", b"/tickets/abcdefghijklmnopqrstuv")
      for key in (b"\xff\xfe", b"\xed\xa0\x80")],
    # Bodies that cannot be read: a broken Content-Encoding.
    *[(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
       b"\r\nContent-Encoding: " + encoding, b"not compressed at all", 400)
      for path in (b"/api/generate-qris", b"/api/user-sessions", b"/api/payment-callback",
                   b"/simulator/pay/SIM-ABC")
      for encoding in (b"gzip", b"deflate")],
]


@pytest.mark.parametrize(("head", "body", "status"), CASES,
                         ids=[repr(head[:60] + body[:20]) for head, body, _ in CASES])
async def test_hostile_bytes_get_a_4xx_and_no_traceback(
        viewer: ViewerClient, settings: Settings, caplog: pytest.LogCaptureFixture,
        head: bytes, body: bytes, status: int) -> None:
    await viewer.generate_qris()
    before = store_snapshot(settings)
    caplog.set_level(logging.INFO)
    server = viewer.http.server
    response = await raw_request(server.host, server.port, head, body)
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    assert b"Traceback" not in response.body
    assert not [record for record in caplog.records if record.exc_info]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert store_snapshot(settings) == before


@pytest.mark.parametrize("cookie", [b"viewer=\xff\xfe", b"viewer=a.b\xed\xa0\x80.c",
                                    b"viewer=" + b"x" * 4000, b"viewer=a.%ff.b"])
async def test_a_bad_viewer_cookie_is_an_unknown_viewer(viewer: ViewerClient,
                                                        cookie: bytes) -> None:
    server = viewer.http.server
    response = await raw_request(server.host, server.port,
                                 b"GET /api/user-sessions HTTP/1.1\r\nHost: x\r\nCookie: " + cookie)
    assert response.status == 200, response.body
    assert response.headers["set-cookie"].startswith("viewer=")


async def test_a_malformed_http_request_is_one_warning_line(
        viewer: ViewerClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = viewer.http.server
    response = await raw_request(server.host, server.port,
                                 b"GET /api/streams?x=\xff HTTP/1.1\r\nHost: x")
    assert response.status == 400
    assert not [record for record in caplog.records if record.exc_info]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in caplog.records]

