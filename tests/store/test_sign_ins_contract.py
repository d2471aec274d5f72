"""The contract of the store's ended console sign-ins (`SignIns`), on every backend: an
ended sign-in stays ended until its cookie would have expired, for every instance."""

from __future__ import annotations

from gateway.store.base import Store
from tests.store.conftest import T0


async def test_an_ended_sign_in_is_refused_until_its_time(store: Store) -> None:
    sign_ins = store.sign_ins
    assert not await sign_ins.is_ended("nonce-a", T0)
    await sign_ins.end("nonce-a", T0 + 60_000, T0)
    assert await sign_ins.is_ended("nonce-a", T0 + 59_000)
    assert not await sign_ins.is_ended("nonce-b", T0 + 1)
    await sign_ins.end("nonce-a", T0 + 60_000, T0)  # signing out twice changes nothing
    assert await sign_ins.is_ended("nonce-a", T0 + 1)


async def test_every_instance_refuses_it(two_handles: tuple[Store, Store]) -> None:
    first, second = two_handles
    await first.sign_ins.end("nonce-a", T0 + 60_000, T0)
    assert await second.sign_ins.is_ended("nonce-a", T0 + 1)
