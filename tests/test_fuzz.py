"""A fuzzer against the real service (`python -m gateway serve`, its log captured):

1. schemathesis over the OpenAPI document, every operation, data that fits the
   document and data that doesn't: any 5xx, any answer the document does not allow
   (status, content type, body) fails;
2. hypothesis strategies for what a schema cannot express, written to the socket as
   bytes: invalid UTF-8 and lone surrogates in the query, headers and cookies, Unicode
   and endless digits, JSON nested thousands deep, bodies whose length or encoding
   lies, huge Range numbers on a paid stream's media, Expect headers, WebSocket
   handshakes with malformed Origin, Host and handshake headers. Any 5xx fails;
3. afterwards, the service's log: any traceback, or any line at level error, fails.

Bounded (GATEWAY_FUZZ_EXAMPLES per operation and mode, default 30), seeded
(GATEWAY_FUZZ_SEED, else random), and the seed is printed at the end of the run so a
failure can be replayed.
"""

from __future__ import annotations

import collections
import json
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.conftest import API_KEY, SECRET, WEBHOOK_SECRET
from tests.server_process import ServerProcess

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "30"))
SEED = int(os.environ.get("GATEWAY_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
OPERATOR_PATHS = ("/metrics", "/api/notifications", "/api/sessions/{sessionId}/revoke",
                  "/api/refunds")
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
# What the fuzzer sent, by endpoint, and what came back: printed with the seed.
TALLY: collections.Counter[tuple[str, str]] = collections.Counter()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    home = tmp_path_factory.mktemp("fuzz")
    log_path = home / "gateway.log"
    server = ServerProcess({
        "GATEWAY_VAR_DIR": str(home / "var"),
        "GATEWAY_STORE": f"sqlite:///{home / 'gateway.db'}",
        "GATEWAY_SECRET": SECRET, "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GATEWAY_API_KEY": API_KEY, "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_LOG_LEVEL": "INFO",
        # A body that promises more than it sends is given up on quickly.
        "GATEWAY_BODY_TIMEOUT_SECONDS": "1",
    }, log_path=log_path).start()
    try:
        yield server, log_path
    finally:
        server.stop()


def _label(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
        service: tuple[ServerProcess, Path], record_property: Any) -> None:
    server, _ = service
    record_property("fuzz_seed", SEED)
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    http = requests.Session()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = _label(operation.method, operation.path)
        headers = {"X-Api-Key": API_KEY} if operation.path in OPERATOR_PATHS else {}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzzer(operation, mode, server.url, http, headers)()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no inputs
            except Exception as exc:  # every failure is reported at once
                failures.append(f"{label} ({mode.value}): {str(exc)[:2000]}")
    assert not failures, f"seed {SEED}:\n" + "\n\n".join(failures)


def _fuzzer(operation: Any, mode: GenerationMode, base_url: str, http: requests.Session,
            headers: dict[str, str]) -> Any:
    label = _label(operation.method, operation.path)

    @seed(SEED)
    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=http, headers=headers, timeout=10)
        TALLY[(label, "requests")] += 1
        if response.status_code >= 500:
            TALLY[(label, "5xx")] += 1
        case.validate_response(response, checks=CHECKS)

    return run


# --- what a schema cannot express, as raw bytes ----------------------------------------

NASTY_TEXT = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"\xc2\xb2", b"\xd9\xa3", b"%ff%fe",
                     b"%ED%A0%80", b"%C2%B2", b"1" * 5000, b"[::1", b"xn--a", b"\x80",
                     b"bytes=" + b"9" * 400 + b"-", b"bytes=\xd9\xa3-5", b"t=\xc2\xb2,v1=",
                     b"Bearer \xff", b"viewer=a.b.c; gate=\xff", b"gate=a; gate=b",
                     b"bytes=0-" + b"9" * 5000, b"bytes=-" + b"1" * 400, b"100-continue",
                     b"gzip", b"deflate", b"br", b"203.0.113.9, \xff"]),
).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b""))
PATHS_LIST = [
    b"/api/generate-qris", b"/api/payment-callback", b"/api/check-access",
    b"/api/user-sessions", b"/api/qr/AAAAAAAAAAAAAAAAAAAAAA.png",
    b"/api/sessions/AAAAAAAAAAAAAAAAAAAAAA/revoke", b"/api/notifications", b"/api/streams",
    b"/ws", b"/hls/demo/index.m3u8", b"/hls/demo/t/x.y.z/index.m3u8", b"/metrics",
    b"/readyz", b"/healthz", b"/simulator/pay/NOSUCH", b"/watch/demo", b"/api/openapi.json",
    b"/", b"/tickets", b"/tickets/AAAAAAAAAAAAAAAAAAAAAA", b"/static/app.css",
    b"/static/" + b"a" * 300 + b".css", b"/admin", b"/admin/sign-in", b"/simulator/pay/..",
]
PATHS = st.sampled_from(PATHS_LIST)
HEADER_NAMES = st.sampled_from([b"Authorization", b"X-Api-Key", b"Cookie", b"Origin",
                                b"Host", b"Range", b"X-Gateway-Signature", b"Accept",
                                b"Accept-Language", b"Content-Type", b"Expect",
                                b"Content-Encoding", b"X-Forwarded-For", b"Referer",
                                b"User-Agent", b"Sec-WebSocket-Key", b"Sec-WebSocket-Protocol",
                                b"Sec-WebSocket-Extensions", b"If-None-Match"])
BODIES = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=20_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.sampled_from([b'{"streamId":"demo","amount":' + b"9" * 5000 + b"}",
                     b'{"streamId":"\\ud800"}', b'{"streamId":"demo\xff"}',
                     b'{"eventId":"e","trxId":"t","amount":1,"status":"paid"}']),
)
WS_HEADERS = (b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
              b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")


@st.composite
def raw_requests(draw: st.DrawFn, media: list[bytes]) -> tuple[str, bytes, bool]:
    """(label, the request's bytes, whether to stop sending after them: a body that
    promised more than it sent then ends)."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS"]))
    path = draw(st.one_of(PATHS, st.sampled_from(media)))
    query = b"&".join(draw(NASTY_TEXT) + b"=" + draw(NASTY_TEXT).replace(b" ", b"%20")
                      .replace(b"#", b"%23") for _ in range(draw(st.integers(0, 3))))
    target = path + (b"?" + query if query else b"")
    headers = [(name, draw(NASTY_TEXT)) for name in draw(st.lists(HEADER_NAMES, max_size=4))]
    lines = [method + b" " + target.replace(b" ", b"%20") + b" HTTP/1.1"]
    if not any(name == b"Host" for name, _ in headers):
        lines.append(b"Host: 127.0.0.1")
    lines += [name + b": " + value for name, value in headers]
    head = b"\r\n".join(lines) + (WS_HEADERS if path == b"/ws" and draw(st.booleans()) else b"")
    body = draw(BODIES) if method in (b"POST", b"PUT") else b""
    # The length may lie, either way: the rest of a body that promised more never comes.
    declared = len(body) + draw(st.sampled_from([0, 0, 0, 1, 100, -1])) if body else 0
    length = b"\r\nContent-Length: %d" % max(0, declared) if body else b""
    label = "raw " + (path.decode() if path in PATHS_LIST else "/hls/ (paid)")
    return (label, head + length + b"\r\nConnection: close\r\n\r\n" + body,
            declared > len(body))


def _status(port: int, raw: bytes, half_close: bool) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    if not answer and half_close:
        return 0  # it hung up mid-body: nobody to answer
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _paid_media(server: ServerProcess) -> list[bytes]:
    """A paid viewer's media URLs on the demo stream, both token forms."""
    http = requests.Session()
    qr = http.post(f"{server.url}/api/generate-qris", json={"streamId": "demo"},
                   timeout=10).json()["data"]
    http.post(f"{server.url}/simulator/pay/{qr['trxId']}", json={}, timeout=10)
    access = http.get(f"{server.url}/api/check-access", params={"streamId": "demo"},
                      timeout=10).json()["data"]
    token_playlist = access["tokenPlaybackUrl"].encode()
    segment = token_playlist.rsplit(b"/", 1)[0] + b"/" + next(
        line for line in http.get(server.url + access["tokenPlaybackUrl"], timeout=10)
        .content.splitlines() if line and not line.startswith(b"#"))
    return [token_playlist, segment]


@pytest.mark.slow
def test_raw_bytes_find_no_5xx(service: tuple[ServerProcess, Path],
                               record_property: Any) -> None:
    server, _ = service
    record_property("fuzz_seed", SEED)
    media = _paid_media(server)

    @seed(SEED)
    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES * 25)
    @given(request=raw_requests(media))
    def run(request: tuple[str, bytes, bool]) -> None:
        label, raw, half_close = request
        status = _status(server.port, raw, half_close)
        TALLY[(label, "requests")] += 1
        if status >= 500:
            TALLY[(label, "5xx")] += 1
        assert status < 500, (status, raw[:300])

    run()


@pytest.mark.slow
def test_the_log_holds_no_traceback_and_no_error(service: tuple[ServerProcess, Path]) -> None:
    """Runs after the fuzzers (file order): garbage is a warning line, never more."""
    _, log_path = service
    # "\n" only: a JSON line may hold U+2028 and the like, which splitlines() splits on.
    lines = [line for line in log_path.read_text(errors="replace").split("\n") if line]
    tracebacks = [line for line in lines if "Traceback" in line]
    errors = [line for line in lines if line.startswith("{")
              and json.loads(line).get("level") in ("error", "critical")]
    TALLY[("(log)", "tracebacks")] += len(tracebacks)
    assert not tracebacks and not errors, f"seed {SEED}:\n" + "\n".join(
        (tracebacks + errors)[:20])


def fuzz_summary() -> list[str]:
    """For the end of the run (tests/conftest.py): the seed and what was sent."""
    if not TALLY:
        return []
    endpoints = sorted({label for label, _ in TALLY if label != "(log)"})
    return [f"fuzz seed {SEED} (replay: GATEWAY_FUZZ_SEED={SEED})",
            *(f"  {label}: {TALLY[(label, 'requests')]} requests, "
              f"{TALLY[(label, '5xx')]} 5xx" for label in endpoints),
            f"  log: {TALLY[('(log)', 'tracebacks')]} tracebacks"]
