"""Requests no well-behaved client library would send, written to the socket as bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(host: str, port: int, head: bytes, body: bytes = b"",
                      timeout_s: float = 10) -> RawResponse:
    """Send `head` (request line and headers, without the blank line) and `body` as they
    are, with `Connection: close`, and read the whole answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n"
                     + (b"Content-Length: %d\r\n" % len(body) if body else b"")
                     + b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, payload)
