"""The contract of the store's rate-limit counters (`Counters`), on every backend: hits
counted per bucket in fixed windows, concurrent hits each counted once; with a shared
store, every instance counting together."""

from __future__ import annotations

import asyncio
import random
from collections import deque

import pytest

from gateway.line import provider_pace
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


async def test_a_caller_woken_late_still_takes_a_moment_missed_by_at_most_the_catch_up(
        store: Store) -> None:
    counters = store.counters
    assert await counters.reserve("provider-create", 100, T0, 0) == 0
    # Woken 40 ms after its moment (T0 + 100): it is taken, and the next stays on the
    # schedule (T0 + 200) instead of slipping to one interval after the late wake-up.
    assert await counters.reserve("provider-create", 100, T0 + 140, 0, catch_up_ms=300) == 0
    assert await counters.next_free_ms("provider-create", T0 + 140) == 60
    # Missed by more than the catch-up: at most the catch-up's worth is taken back, so
    # a quiet spell saves up no burst beyond catch_up_ms / interval_ms moments.
    taken = [await counters.reserve("provider-create", 100, T0 + 10_000, 0, catch_up_ms=300)
             for _ in range(5)]
    assert taken == [0, 0, 0, 0, None]  # T0 + 9,700 ... T0 + 10,000
    assert await counters.next_free_ms("provider-create", T0 + 10_000) == 100


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


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_provider_pace_never_overruns_a_sliding_minute_yet_uses_its_cap(
        store: Store, seed: int) -> None:
    """The line's pace against Xendit's rule (at most 600 creates in any sliding 60 s),
    over three simulated minutes: two drains woken up to CATCH_UP_MS late, each call
    reaching the provider up to as long again after it took its moment."""
    rng = random.Random(seed)
    rate = 600
    interval_ms, catch_up_ms = provider_pace(rate)
    arrivals_ms: list[int] = []
    wake_ms = [T0, T0 + 7]  # two drains (workers), each looking when it last expected
    end_ms = T0 + 180_000
    while min(wake_ms) < end_ms:
        drain = wake_ms.index(min(wake_ms))
        now_ms = wake_ms[drain]
        taken = await store.counters.reserve("provider-create", interval_ms, now_ms, 0,
                                             catch_up_ms=catch_up_ms)
        if taken is not None:
            arrivals_ms.append(now_ms + rng.randint(0, catch_up_ms))  # the call travels
            wake_ms[drain] = now_ms + 1
        else:  # asleep until the next free moment, woken late by a busy loop
            free_in_ms = await store.counters.next_free_ms("provider-create", now_ms)
            wake_ms[drain] = now_ms + max(free_in_ms, 1) + rng.randint(0, catch_up_ms)
    window: deque[int] = deque()
    for at_ms in sorted(arrivals_ms):
        while window and window[0] <= at_ms - 60_000:
            window.popleft()
        assert len(window) < rate, "the provider would answer 429"
        window.append(at_ms)
    # The slack left unused is 1%; late wake-ups lose nothing more.
    assert len(arrivals_ms) >= 0.985 * rate * 3
