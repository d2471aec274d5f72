"""Session stores: one interface (`base.SessionStore`), one module per backend."""

from __future__ import annotations

from gateway.store.base import SessionStore, StoredNotification

__all__ = ["SessionStore", "StoredNotification", "open_store"]


async def open_store(url: str, key_prefix: str = "gateway:") -> SessionStore:
    """Open the backend that `GATEWAY_STORE` names (validated by Settings)."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteStore

        return await SQLiteStore.open(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.store.redis import RedisStore

        return await RedisStore.open(url, key_prefix)
    raise ValueError(f"GATEWAY_STORE: {url.split(':', 1)[0]}:// is not a store backend")
