"""The key schedule, key ids, IVs, and StreamKeys over a shared KeyStore."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.keys import (
    KEY_BYTES,
    MAX_MEDIA_SEQUENCE,
    CorruptKey,
    KeyId,
    KeySchedule,
    KeyWindow,
    StreamKeys,
    segment_iv,
)
from tests.delivery.conftest import MemoryKeyStore

sequences = st.integers(min_value=0, max_value=MAX_MEDIA_SEQUENCE)
rotations_s = st.integers(min_value=1, max_value=24 * 3600)
target_durations_s = st.integers(min_value=1, max_value=20)


# The schedule

@pytest.mark.parametrize(("rotation_s", "target_s", "per_key"), [
    (120, 2, 60), (120, 6, 20), (120, 7, 17), (120, 4.0, 30), (1, 6, 1), (3, 2, 2),
    (5, 2, 2),  # 2.5 rounds to even: deterministic, the same on every instance
])
def test_a_key_covers_about_one_rotation_of_segments(rotation_s: float, target_s: float,
                                                     per_key: int) -> None:
    assert KeySchedule.of(rotation_s, target_s).segments_per_key == per_key


@pytest.mark.parametrize(("rotation_s", "target_s"), [(0, 2), (120, 0), (-5, 2), (120, -1)])
def test_a_schedule_needs_positive_times(rotation_s: float, target_s: float) -> None:
    with pytest.raises(ValueError):
        KeySchedule.of(rotation_s, target_s)


@given(rotations_s, target_durations_s, sequences)
def test_a_segment_has_one_key_whenever_and_wherever_it_is_asked(
        rotation_s: int, target_s: int, sequence: int) -> None:
    """Two instances, or one playlist refresh and the next: the same key id."""
    first = KeySchedule.of(rotation_s, target_s).key_id(sequence)
    again = KeySchedule.of(rotation_s, target_s).key_id(sequence)
    assert first == again and str(first) == str(again)
    assert first.first_sequence <= sequence < first.first_sequence + first.segments


@given(st.integers(min_value=10, max_value=3600), target_durations_s,
       st.integers(min_value=0, max_value=10**9))
def test_a_live_stream_gets_a_new_key_about_every_rotation(
        rotation_s: int, target_s: int, start: int) -> None:
    schedule = KeySchedule.of(rotation_s, target_s)
    keys = [schedule.key_id(sequence) for sequence in range(start, start + 3 * 3600)]
    runs = [len(list(run)) for _, run in itertools.groupby(keys)]
    assert len(runs) >= 3
    for run in runs[1:-1]:  # whole keys; the first and last are cut by the range
        assert run == schedule.segments_per_key
        assert abs(run * target_s - rotation_s) <= target_s / 2  # media under one key


def test_two_hours_of_two_second_segments_at_the_default_rotation_use_sixty_keys() -> None:
    schedule = KeySchedule.of(120, 2)
    assert len({schedule.key_id(sequence) for sequence in range(3600)}) == 60
    assert str(schedule.key_id(0)) == "0-60" and str(schedule.key_id(3599)) == "3540-60"


# Key ids

@given(sequences, st.integers(min_value=1, max_value=9_999_999))
def test_a_key_id_reads_back_as_it_was_written(sequence: int, per_key: int) -> None:
    key_id = KeySchedule(per_key).key_id(sequence)
    assert KeyId.parse(str(key_id)) == key_id


@pytest.mark.parametrize("text", [
    "", "0", "-", "0-", "-60", "60", "01-60", "0-060", "30-60", "0-0", "-0-60", "+0-60",
    "0-60 ", " 0-60", "0-60\n", "٣-1", "0x10-1", "0_0-60", "1.5-1", "0-60-60",
    "184467440737095516150-1",  # past 2^64
    "0-10000000",  # more segments per key than allowed
])
def test_key_ids_out_of_grammar_name_nothing(text: str) -> None:
    assert KeyId.parse(text) is None


@pytest.mark.parametrize(("first", "per_key"), [(1, 2), (0, 0), (-2, 2), (2**64, 1)])
def test_a_key_id_cannot_be_made_out_of_step(first: int, per_key: int) -> None:
    with pytest.raises(ValueError):
        KeyId(first, per_key)


def test_the_same_sequence_under_another_rotation_is_another_key() -> None:
    """A changed setting or a rendition with other segment lengths never reuses a key
    for other segments: the count is part of the name."""
    assert str(KeySchedule(60).key_id(120)) == "120-60"
    assert str(KeySchedule(120).key_id(120)) == "120-120"


# Windows

def test_a_live_playlist_may_make_its_newest_key_and_the_one_before() -> None:
    schedule = KeySchedule(10)
    window = schedule.window(95, 125, ended=False)  # keys 90-10 .. 120-10 named
    assert [str(k) for k in map(schedule.key_id, (125, 115)) if k in window] == [
        "120-10", "110-10"]
    assert schedule.key_id(105) not in window and schedule.key_id(95) not in window
    assert schedule.key_id(135) not in window  # nothing ahead of the newest segment
    assert KeyId(120, 20) not in window and "120-10" not in window


def test_an_ended_playlist_may_make_every_key_it_names() -> None:
    schedule = KeySchedule(10)
    window = schedule.window(0, 999, ended=True)
    assert all(schedule.key_id(sequence) in window for sequence in range(1000))
    assert schedule.key_id(1000) not in window


def test_a_window_at_the_start_of_a_stream_starts_at_zero() -> None:
    assert KeySchedule(10).window(0, 3, ended=False) == KeyWindow(10, 0, 0)


# IVs

@given(st.text(min_size=1, max_size=20), sequences, st.text(min_size=1, max_size=40))
def test_an_iv_is_sixteen_bytes_and_the_same_every_time(stream_id: str, sequence: int,
                                                        path: str) -> None:
    key_id = KeySchedule(60).key_id(sequence)
    iv = segment_iv(stream_id, key_id, path)
    assert len(iv) == 16 and iv == segment_iv(stream_id, key_id, path)


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a-b"]),
                          st.sampled_from([KeyId(0, 60), KeyId(60, 60), KeyId(0, 30)]),
                          st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}\.ts",
                                        fullmatch=True)),
                unique=True, min_size=2, max_size=50))
def test_no_two_segments_share_an_iv(segments: list[tuple[str, KeyId, str]]) -> None:
    ivs = {segment_iv(*segment) for segment in segments}
    assert len(ivs) == len(segments)


def test_an_iv_keeps_its_parts_apart() -> None:
    """Stream "a" with path "b/c.ts" and stream "a/b" with path "c.ts" differ."""
    assert segment_iv("a", KeyId(0, 1), "b/c.ts") != segment_iv("a/b", KeyId(0, 1), "c.ts")


# StreamKeys

WINDOW = KeySchedule(60).window(0, 170, ended=False)  # keys 60-60 and 120-60
CURRENT = KeyId(120, 60)
OLD = KeyId(0, 60)


async def test_a_key_is_made_once_then_known_without_the_store(
        key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    key = await keys.get_or_create("s", CURRENT, WINDOW)
    assert key is not None and len(key) == KEY_BYTES
    assert key_store.calls == [("create", "s", "120-60")]
    assert await keys.get_or_create("s", CURRENT, WINDOW) == key
    assert await keys.get("s", CURRENT) == key
    assert keys.known("s", CURRENT) == key
    assert len(key_store.calls) == 1


async def test_every_instance_gets_the_first_writers_key(key_store: MemoryKeyStore) -> None:
    one, two = StreamKeys(key_store), StreamKeys(key_store)
    made = await asyncio.gather(one.get_or_create("s", CURRENT, WINDOW),
                                two.get_or_create("s", CURRENT, WINDOW))
    assert made[0] == made[1] == key_store.keys[("s", "120-60")]
    assert await StreamKeys(key_store).get("s", CURRENT) == made[0]


async def test_keys_are_per_stream_and_random(key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    made = [await keys.get_or_create(stream, key_id, WINDOW)
            for stream in ("a", "b") for key_id in (KeyId(60, 60), CURRENT)]
    assert len(set(made)) == 4


async def test_what_a_client_names_is_looked_up_never_made(key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    assert await keys.get("s", CURRENT) is None
    assert await keys.get("s", KeyId(60 * 10**12, 60)) is None
    assert key_store.keys == {}
    assert [call[0] for call in key_store.calls] == ["get", "get"]


async def test_a_key_outside_the_window_is_looked_up_never_made(
        key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    assert await keys.get_or_create("s", OLD, WINDOW) is None
    assert await keys.get_or_create("s", KeyId(180, 60), WINDOW) is None  # ahead
    assert await keys.get_or_create("s", KeyId(120, 30), WINDOW) is None  # other schedule
    assert key_store.keys == {}
    key_store.keys[("s", "0-60")] = b"k" * 16  # made while it was current
    assert await keys.get_or_create("s", OLD, WINDOW) == b"k" * 16


async def test_an_absent_key_is_asked_again_next_time(key_store: MemoryKeyStore) -> None:
    """Not remembered as missing: another instance may make it a moment later."""
    keys = StreamKeys(key_store)
    assert await keys.get("s", CURRENT) is None
    key_store.keys[("s", "120-60")] = b"k" * 16
    assert await keys.get("s", CURRENT) == b"k" * 16


async def test_concurrent_requests_share_one_store_call(key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    key_store.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(keys.get_or_create("s", CURRENT, WINDOW))
               for _ in range(50)]
    await asyncio.sleep(0.01)
    key_store.gate.set()
    made = await asyncio.gather(*waiting)
    assert len(set(made)) == 1 and key_store.calls == [("create", "s", "120-60")]


async def test_a_caller_giving_up_does_not_cancel_the_others(
        key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    key_store.gate = asyncio.Event()
    leaving = asyncio.ensure_future(keys.get_or_create("s", CURRENT, WINDOW))
    staying = asyncio.ensure_future(keys.get_or_create("s", CURRENT, WINDOW))
    await asyncio.sleep(0.01)
    leaving.cancel()
    key_store.gate.set()
    assert await staying is not None
    assert leaving.cancelled() and len(key_store.calls) == 1


async def test_a_store_failure_reaches_every_waiter_and_is_not_kept(
        key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    key_store.fail = ConnectionError("store down")
    results = await asyncio.gather(keys.get("s", CURRENT), keys.get("s", CURRENT),
                                   return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert len(key_store.calls) == 1
    key_store.fail = None
    assert await keys.get_or_create("s", CURRENT, WINDOW) is not None


@pytest.mark.parametrize("stored", [b"short", b"x" * 32, "a string of sixteen"])
async def test_a_key_that_is_not_sixteen_bytes_is_refused(key_store: MemoryKeyStore,
                                                          stored: object) -> None:
    key_store.keys[("s", "120-60")] = stored  # type: ignore[assignment]
    keys = StreamKeys(key_store)
    with pytest.raises(CorruptKey):
        await keys.get("s", CURRENT)
    assert keys.known("s", CURRENT) is None


async def test_memory_holds_the_most_recently_used_keys(key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store, capacity=2)
    window = KeySchedule(1).window(0, 2, ended=True)
    for sequence in (0, 1):
        await keys.get_or_create("s", KeyId(sequence, 1), window)
    await keys.get("s", KeyId(0, 1))  # used again: now the newest
    await keys.get_or_create("s", KeyId(2, 1), window)  # pushes out 1-1
    assert keys.known("s", KeyId(0, 1)) is not None
    assert keys.known("s", KeyId(1, 1)) is None
    calls = len(key_store.calls)
    await keys.get("s", KeyId(1, 1))  # asked again, and the same key comes back
    assert len(key_store.calls) == calls + 1


async def test_prepare_makes_what_it_may_and_names_what_is_missing(
        key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store)
    missing = await keys.prepare("s", [OLD, KeyId(60, 60), CURRENT, CURRENT], WINDOW)
    assert missing == [OLD]
    assert set(key_store.keys) == {("s", "60-60"), ("s", "120-60")}
    assert sorted(key_store.calls).count(("create", "s", "120-60")) == 1


async def test_keys_come_from_the_given_source(key_store: MemoryKeyStore) -> None:
    keys = StreamKeys(key_store, new_key=lambda: b"\x01" * 16)
    assert await keys.get_or_create("s", CURRENT, WINDOW) == b"\x01" * 16
    with pytest.raises(ValueError):
        StreamKeys(key_store, capacity=0)
