"""The contract of the store's media keys (`MediaKeys`, keys delivery), on every backend:
a key is made once, by the first writer, and every caller (on every instance sharing
the store) reads those same 16 bytes; keys are per stream and key id."""

from __future__ import annotations

import asyncio
import secrets

from gateway.delivery.keys import KeyId, KeySchedule, KeyStore, StreamKeys
from gateway.store.base import Store


async def test_a_key_is_kept_by_the_first_writer(store: Store) -> None:
    keys = store.media_keys
    assert await keys.get("demo", "0-60") is None
    first, second = secrets.token_bytes(16), secrets.token_bytes(16)
    assert await keys.create("demo", "0-60", first) == first
    assert await keys.create("demo", "0-60", second) == first
    assert await keys.get("demo", "0-60") == first


async def test_keys_are_per_stream_and_key_id(store: Store) -> None:
    keys = store.media_keys
    made = {(stream, key_id): secrets.token_bytes(16)
            for stream in ("demo", "konser") for key_id in ("0-60", "60-60", "0-30")}
    for (stream, key_id), key in made.items():
        assert await keys.create(stream, key_id, key) == key
    for (stream, key_id), key in made.items():
        assert await keys.get(stream, key_id) == key
    assert await keys.get("demo", "120-60") is None
    assert await keys.get("other", "0-60") is None


async def test_concurrent_makers_all_get_the_one_key_kept(store: Store) -> None:
    offered = [secrets.token_bytes(16) for _ in range(20)]
    kept = await asyncio.gather(*(store.media_keys.create("demo", "60-60", key)
                                  for key in offered))
    assert len(set(kept)) == 1 and kept[0] in offered
    assert await store.media_keys.get("demo", "60-60") == kept[0]


async def test_every_instance_sharing_the_store_reads_the_same_key(
        two_handles: tuple[Store, Store]) -> None:
    first, second = two_handles
    made = await asyncio.gather(first.media_keys.create("demo", "0-60", secrets.token_bytes(16)),
                                second.media_keys.create("demo", "0-60", secrets.token_bytes(16)))
    assert made[0] == made[1]
    assert await second.media_keys.get("demo", "0-60") == made[0]


async def test_the_store_part_is_what_keys_delivery_keeps_its_keys_in(store: Store) -> None:
    key_store: KeyStore = store.media_keys  # the Protocol keys delivery asks for
    schedule = KeySchedule(60)
    key_id = schedule.key_id(125)
    window = schedule.window(100, 125, ended=False)
    made = await StreamKeys(key_store).get_or_create("demo", key_id, window)
    assert made is not None
    assert await StreamKeys(key_store).get("demo", KeyId(120, 60)) == made
