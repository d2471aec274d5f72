"""The `store` fixture: every contract test runs on each real backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.base import SessionStore
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SQLiteStore
from tests.conftest import REDIS_URL, redis_keyspace


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    if request.param == "redis":
        async with redis_keyspace() as prefix:
            opened: SessionStore = await RedisStore.open(REDIS_URL, prefix)
            yield opened
            await opened.close()
        return
    path = str(tmp_path / "store.db") if request.param == "sqlite-file" else ":memory:"
    opened = await SQLiteStore.open(path)
    yield opened
    await opened.close()
