"""The contract of the store's device grants (`DeviceGrants`, SPEC Devices), on every
backend: one grant per purchase and device, places counted per client address up to
the limit and forgotten after the playing window, as `device_model.decide_claim` says,
and one count shared by every instance."""

from __future__ import annotations

import asyncio

from gateway.device_model import DeviceGrant
from gateway.store.base import DeviceGrants, Store
from tests.store.conftest import T0

PLAY_WINDOW_MS = 30_000


async def grant_for(grants: DeviceGrants, session_id: str, device: str, at_ms: int,
                    grant_id: str) -> DeviceGrant:
    grant, places = await grants.grant_for_device(session_id, device, at_ms, grant_id,
                                                  at_ms - PLAY_WINDOW_MS)
    # What comes with the grant is what `playing` says, from the same trip.
    assert places == await grants.playing(session_id, at_ms - PLAY_WINDOW_MS)
    return grant


async def test_a_device_keeps_its_grant_and_each_device_gets_its_own(store: Store) -> None:
    grants = store.grants
    first = await grant_for(grants, "sess-a", "browser:1", T0, "grant-1")
    again = await grant_for(grants, "sess-a", "browser:1", T0 + 5000, "grant-2")
    other = await grant_for(grants, "sess-a", "device:tv", T0 + 6000, "grant-3")
    elsewhere = await grant_for(grants, "sess-b", "browser:1", T0 + 7000, "grant-4")
    assert again == first and first.grant_id == "grant-1" and first.created_at_ms == T0
    assert first.ended_at_ms is None and first.device_id is None
    assert other.grant_id == "grant-3" and other.device_id == "tv"
    assert elsewhere.grant_id == "grant-4"
    assert await grants.get_grant("grant-3") == other
    assert await grants.get_grant("grant-2") is None
    assert [grant.grant_id for grant in await grants.grants("sess-a")] == ["grant-1", "grant-3"]


async def test_concurrent_asks_from_one_device_make_one_grant(store: Store) -> None:
    made = await asyncio.gather(*(grant_for(store.grants, "sess-a", "browser:1", T0,
                                            f"grant-{n}") for n in range(20)))
    assert len({grant.grant_id for grant in made}) == 1
    assert len(await store.grants.grants("sess-a")) == 1


async def test_places_up_to_the_limit_then_full(store: Store) -> None:
    grants = store.grants
    a = await grant_for(grants, "sess-a", "browser:1", T0, "grant-a")
    b = await grant_for(grants, "sess-a", "browser:2", T0, "grant-b")
    since = T0 - PLAY_WINDOW_MS

    async def claim(grant_id: str, address: str, at_ms: int = T0) -> str:
        return await grants.claim_place("sess-a", grant_id, address, at_ms,
                                        at_ms - PLAY_WINDOW_MS, 2)

    assert await claim(a.grant_id, "10.0.0.1") == "admitted"
    assert await claim(b.grant_id, "10.0.0.2", T0 + 1000) == "admitted"
    # The same grant from a third address is a third place: a shared link counts per place.
    assert await claim(a.grant_id, "10.0.0.3", T0 + 2000) == "full"
    assert await claim(a.grant_id, "10.0.0.1", T0 + 3000) == "admitted"  # renewing is not new
    places = await grants.playing("sess-a", since)
    assert [(p.grant_id, p.address, p.first_seen_ms, p.last_seen_ms) for p in places] == [
        ("grant-a", "10.0.0.1", T0, T0 + 3000), ("grant-b", "10.0.0.2", T0 + 1000, T0 + 1000)]
    # b stops; 30 s after its last report its place is free, a's is still held.
    later = T0 + 1000 + PLAY_WINDOW_MS
    assert await claim(a.grant_id, "10.0.0.3", later) == "admitted"
    assert {p.address for p in await grants.playing("sess-a", later - PLAY_WINDOW_MS)} == {
        "10.0.0.1", "10.0.0.3"}
    # Forgotten, not merely not counted: asked about all it holds, b's place is gone.
    assert {p.grant_id for p in await grants.playing("sess-a", 0)} == {"grant-a"}


async def test_no_limit_means_every_place_is_admitted(store: Store) -> None:
    grant = await grant_for(store.grants, "sess-a", "browser:1", T0, "grant-a")
    for n in range(5):
        assert await store.grants.claim_place("sess-a", grant.grant_id, f"10.0.0.{n}", T0,
                                              T0 - PLAY_WINDOW_MS, 0) == "admitted"
    assert len(await store.grants.playing("sess-a", T0 - PLAY_WINDOW_MS)) == 5


async def test_ending_a_grant_frees_its_places_and_the_device_gets_a_new_one(
        store: Store) -> None:
    grants = store.grants
    a = await grant_for(grants, "sess-a", "browser:1", T0, "grant-a")
    b = await grant_for(grants, "sess-a", "browser:2", T0, "grant-b")
    for grant, address in ((a, "10.0.0.1"), (a, "10.0.0.9"), (b, "10.0.0.2")):
        await grants.claim_place("sess-a", grant.grant_id, address, T0, T0 - PLAY_WINDOW_MS, 3)
    ended = await grants.end_grant("grant-a", T0 + 500)
    assert ended is not None and ended.ended_at_ms == T0 + 500
    assert await grants.end_grant("grant-a", T0 + 900) == ended  # idempotent
    assert await grants.end_grant("no-such-grant", T0) is None
    assert [p.grant_id for p in await grants.playing("sess-a", T0 - PLAY_WINDOW_MS)] == [
        "grant-b"]
    assert await grants.claim_place("sess-a", "grant-a", "10.0.0.1", T0 + 1000,
                                    T0 - PLAY_WINDOW_MS, 3) == "ended"
    fresh = await grant_for(grants, "sess-a", "browser:1", T0 + 1000, "grant-c")
    assert fresh.grant_id == "grant-c"
    assert [(g.grant_id, g.ended_at_ms) for g in await grants.grants("sess-a")] == [
        ("grant-a", T0 + 500), ("grant-b", None), ("grant-c", None)]


async def test_a_grant_claims_places_only_for_its_own_purchase(store: Store) -> None:
    await grant_for(store.grants, "sess-a", "browser:1", T0, "grant-a")
    assert await store.grants.claim_place("sess-b", "grant-a", "10.0.0.1", T0,
                                          T0 - PLAY_WINDOW_MS, 2) == "ended"
    assert await store.grants.claim_place("sess-a", "unknown", "10.0.0.1", T0,
                                          T0 - PLAY_WINDOW_MS, 2) == "ended"
    assert await store.grants.playing("sess-b", T0 - PLAY_WINDOW_MS) == []


async def test_playing_counts_places_seen_lately_per_purchase(store: Store) -> None:
    grants = store.grants
    now = T0 + 60_000
    a = await grant_for(grants, "sess-a", "device:a", now, "grant-a")
    b = await grant_for(grants, "sess-b", "device:b", now, "grant-b")
    await grant_for(grants, "sess-c", "device:c", now, "grant-c")  # a grant nothing plays
    assert await grants.playing_counts(["sess-a", "sess-b", "sess-c"], now - 30_000) == {}
    # Two places for the first purchase (a shared link), one for the second.
    for grant, address in ((a, "10.0.0.1"), (a, "10.0.0.2"), (b, "10.0.0.3")):
        await grants.claim_place(grant.session_id, grant.grant_id, address, now,
                                 now - 30_000, 0)
    assert await grants.playing_counts(["sess-a", "sess-b", "sess-c", "sess-x"],
                                       now - 30_000) == {"sess-a": 2, "sess-b": 1}
    assert await grants.playing_counts(["sess-b"], now - 30_000) == {"sess-b": 1}
    assert await grants.playing_counts([], now - 30_000) == {}
    # Thirty seconds of silence and a place no longer plays; an ended grant frees its
    # places.
    assert await grants.playing_counts(["sess-a", "sess-b"], now + 1) == {}
    await grants.end_grant(b.grant_id, now + 1000)
    assert await grants.playing_counts(["sess-a", "sess-b"], now - 29_000) == {"sess-a": 2}


async def test_two_instances_share_one_count_of_places(two_handles: tuple[Store, Store]
                                                       ) -> None:
    first, second = two_handles
    made = [await grant_for(first.grants, "sess-a", f"browser:{n}", T0, f"grant-{n}")
            for n in range(3)]
    assert await grant_for(second.grants, "sess-a", "browser:1", T0, "x") == made[1]

    async def claim(handle: Store, n: int, address: str) -> str:
        return await handle.grants.claim_place("sess-a", made[n].grant_id, address, T0,
                                               T0 - PLAY_WINDOW_MS, 2)

    results = await asyncio.gather(claim(first, 0, "10.0.0.1"), claim(second, 1, "10.0.0.2"),
                                   claim(second, 2, "10.0.0.3"), claim(first, 0, "10.0.0.4"))
    assert sorted(results).count("admitted") == 2
    assert len(await first.grants.playing("sess-a", T0 - PLAY_WINDOW_MS)) == 2
