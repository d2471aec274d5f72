"""Session stores: one interface (`base.SessionStore`), one module per backend."""

from __future__ import annotations

from gateway.store.base import SessionStore, StoredNotification

__all__ = ["SessionStore", "StoredNotification", "open_store"]


async def open_store(url: str, key_prefix: str = "gateway:",
                     timeout_s: float = 5.0) -> SessionStore:
    """Open the backend that `GATEWAY_STORE` names (validated by Settings). Every call
    to it then answers or fails with `StoreUnavailable` within about `timeout_s`."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteStore

        return await SQLiteStore.open(url.removeprefix("sqlite:///"), timeout_s=timeout_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.store.redis import RedisStore

        return await RedisStore.open(url, key_prefix, timeout_s=timeout_s)
    raise ValueError(f"GATEWAY_STORE: {url.split(':', 1)[0]}:// is not a store backend")
