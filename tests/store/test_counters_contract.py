"""The contract of the store's rate-limit counters (`Counters`), on every backend: hits
counted per bucket in fixed windows, concurrent hits each counted once; with a shared
store, every instance counting together."""

from __future__ import annotations

import asyncio

from gateway.store.base import Store
from tests.store.conftest import T0

WINDOW_S = 60
WINDOW_START_MS = T0 - T0 % (WINDOW_S * 1000)


async def test_hits_are_counted_per_bucket_and_window(store: Store) -> None:
    counters = store.counters
    assert [await counters.count_hit("qr-addr:10.0.0.1", WINDOW_S, WINDOW_START_MS + n)
            for n in range(3)] == [1, 2, 3]
    assert await counters.count_hit("qr-viewer:alice", WINDOW_S, WINDOW_START_MS) == 1
    # The last millisecond of the window still counts in it; the next starts afresh.
    last_ms = WINDOW_START_MS + WINDOW_S * 1000 - 1
    assert await counters.count_hit("qr-addr:10.0.0.1", WINDOW_S, last_ms) == 4
    assert await counters.count_hit("qr-addr:10.0.0.1", WINDOW_S, last_ms + 1) == 1


async def test_concurrent_hits_are_each_counted_once(store: Store) -> None:
    counts = await asyncio.gather(*(store.counters.count_hit("qr-addr:crowd", WINDOW_S, T0)
                                    for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))


async def test_a_shared_store_counts_every_instance_together(
        two_handles: tuple[Store, Store]) -> None:
    first, second = two_handles
    await first.counters.count_hit("qr-viewer:alice", WINDOW_S, T0)
    count = await second.counters.count_hit("qr-viewer:alice", WINDOW_S, T0)
    # An embedded store serves one process: each handle counts in its own memory.
    assert count == (2 if second.shared else 1)


async def test_pacing_hands_out_one_moment_per_interval(store: Store) -> None:
    counters = store.counters
    # Free now; the next is one interval on; beyond what the caller may wait: nothing.
    assert await counters.reserve("provider-create", 100, T0, 0) == 0
    assert await counters.reserve("provider-create", 100, T0, 0) is None
    assert await counters.reserve("provider-create", 100, T0, 1000) == 100
    assert await counters.reserve("provider-create", 100, T0 + 50, 1000) == 150
    assert await counters.next_free_ms("provider-create", T0 + 50) == 250
    assert await counters.next_free_ms("another", T0) == 0
    # A moment long past is not saved up: no burst after a quiet spell.
    assert await counters.reserve("provider-create", 100, T0 + 10_000, 0) == 0
    assert await counters.reserve("provider-create", 100, T0 + 10_000, 0) is None


async def test_concurrent_reservations_never_share_a_moment(store: Store) -> None:
    waits = await asyncio.gather(*(store.counters.reserve("provider-create", 100, T0, 10_000)
                                   for _ in range(50)))
    assert sorted(w for w in waits if w is not None) == [n * 100 for n in range(50)]


async def test_a_hold_pauses_the_pace_and_never_brings_it_nearer(store: Store) -> None:
    counters = store.counters
    await counters.hold("provider-create", T0 + 5000, T0)  # a 429 with Retry-After: 5
    assert await counters.reserve("provider-create", 100, T0, 1000) is None
    assert await counters.next_free_ms("provider-create", T0) == 5000
    await counters.hold("provider-create", T0 + 1000, T0)  # an earlier one changes nothing
    assert await counters.reserve("provider-create", 100, T0 + 5000, 0) == 0


async def test_a_shared_store_paces_every_instance_together(
        two_handles: tuple[Store, Store]) -> None:
    first, second = two_handles
    assert await first.counters.reserve("provider-create", 100, T0, 0) == 0
    assert await second.counters.reserve("provider-create", 100, T0, 0) is None
    await second.counters.hold("provider-create", T0 + 3000, T0)
    assert await first.counters.next_free_ms("provider-create", T0) == 3000
