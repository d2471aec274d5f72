"""One way for adapters to call a provider's API: bounded in time, and every failure
turned into the domain error the viewer's 502/503 is made from."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp
from yarl import URL

from gateway.errors import ProviderBadResponse, ProviderTimeout, ProviderUnavailable
from gateway.logs import log_event

log = logging.getLogger("gateway.providers")


async def call_json(
    http: aiohttp.ClientSession, provider: str, method: str, url: str, *,
    timeout_s: float, **kwargs: Any,
) -> tuple[int, Any]:
    """The HTTP status and decoded JSON body of one API call. A timeout is
    ProviderTimeout, no connection or a 5xx is ProviderUnavailable, a body that is not
    JSON is ProviderBadResponse. 2xx-4xx bodies are the caller's to interpret."""
    started = time.monotonic()
    # The path only: query strings and hosts can carry keys in some APIs.
    path = URL(url).path
    try:
        async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                allow_redirects=False, **kwargs) as response:
            raw = await response.read()
            status = response.status
    except TimeoutError:
        log_event(log, "provider_call_failed", level=logging.WARNING, provider=provider,
                  path=path, failure="timeout", timeoutS=timeout_s)
        raise ProviderTimeout() from None
    except aiohttp.ClientError as exc:
        log_event(log, "provider_call_failed", level=logging.WARNING, provider=provider,
                  path=path, failure=type(exc).__name__)
        raise ProviderUnavailable() from None
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    log_event(log, "provider_call", provider=provider, method=method, path=path,
              status=status, elapsedMs=elapsed_ms)
    if status >= 500:
        raise ProviderUnavailable()
    try:
        return status, json.loads(raw)
    except ValueError:
        raise ProviderBadResponse(detail=f"{path}: HTTP {status}, not JSON") from None
