"""Who the viewer is on the network: the connection's address, or what a trusted proxy
says it is; a forged header from anyone else changes nothing. (Seen where an operator
sees it: the gate's refusal lines.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway.logs import JsonFormatter
from tests.conftest import AppFactory, make_settings


@pytest.mark.parametrize(("headers", "proxies", "client"), [
    ({}, "", "127.0.0.1"),
    # Nobody trusted, or not this connection: forwarding headers are anyone's to forge.
    ({"X-Forwarded-For": "198.51.100.1"}, "", "127.0.0.1"),
    ({"X-Forwarded-For": "198.51.100.1"}, "10.0.0.1", "127.0.0.1"),
    # From a trusted proxy: the rightmost address that is not a trusted proxy itself.
    ({"X-Forwarded-For": "198.51.100.1"}, "127.0.0.1", "198.51.100.1"),
    ({"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.0.0.5"}, "127.0.0.1,10.0.0.0/8",
     "198.51.100.1"),
    ({"X-Real-IP": "198.51.100.2"}, "127.0.0.0/8", "198.51.100.2"),
    ({"X-Forwarded-For": "not-an-address"}, "127.0.0.1", "127.0.0.1"),
    ({"X-Forwarded-For": "2001:db8::5"}, "127.0.0.1", "2001:db8::5"),
])
async def test_the_client_address(make_viewer: AppFactory, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture, headers: dict[str, str],
                                  proxies: str, client: str) -> None:
    overrides = {"GATEWAY_TRUSTED_PROXIES": proxies} if proxies else {}
    viewer = await make_viewer(make_settings(tmp_path, **overrides))
    caplog.set_level(logging.INFO, logger="gateway.gate")
    async with viewer.http.get("/hls/demo/index.m3u8", headers=headers) as response:
        assert response.status == 403
    [line] = [json.loads(JsonFormatter().format(record)) for record in caplog.records
              if record.getMessage() == "gate_refused"]
    assert line["client"] == client


@pytest.mark.parametrize(("proxies", "secure"), [("127.0.0.1", True), ("10.0.0.1", False)])
async def test_a_trusted_proxys_https_makes_cookies_secure(
        make_viewer: AppFactory, tmp_path: Path, proxies: str, secure: bool) -> None:
    viewer = await make_viewer(make_settings(tmp_path, GATEWAY_TRUSTED_PROXIES=proxies))
    async with viewer.http.post("/api/generate-qris", json={"streamId": "demo"},
                                headers={"X-Forwarded-Proto": "https"}) as response:
        assert response.status == 201
        assert ("; Secure" in response.headers["Set-Cookie"]) is secure
