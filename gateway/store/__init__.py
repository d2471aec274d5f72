"""The store, split by what it holds (`base.py`: one protocol per part, and `Store`,
the parts of one opened store), and one package per backend with one module per part:
`sqlite/` (the embedded default) and `redis/` (shared by several instances)."""

from __future__ import annotations

from gateway.store.base import (
    Cancellations,
    Changes,
    Counters,
    DeviceGrants,
    Ledger,
    MediaKeys,
    PaymentSessions,
    Refunds,
    SignIns,
    Store,
)

__all__ = ["Cancellations", "Changes", "Counters", "DeviceGrants", "Ledger", "MediaKeys",
           "PaymentSessions", "Refunds", "SignIns", "Store", "open_store"]


async def open_store(url: str, key_prefix: str = "gateway:", timeout_s: float = 5.0, *,
                     processes: int = 1) -> Store:
    """Open the backend that `GATEWAY_STORE` names (validated by Settings). Every call
    to it then answers or fails with `StoreUnavailable` within about `timeout_s`.
    `processes`: how many processes share an embedded store's file (GATEWAY_WORKERS)."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import open_sqlite

        return await open_sqlite(url.removeprefix("sqlite:///"), timeout_s=timeout_s,
                                 shared=processes > 1)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.store.redis import open_redis

        return await open_redis(url, key_prefix, timeout_s=timeout_s)
    raise ValueError(f"GATEWAY_STORE: {url.split(':', 1)[0]}:// is not a store backend")
