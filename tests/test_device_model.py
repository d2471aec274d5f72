"""The pure decisions of gateway/device_model.py: given a grant and a purchase's places
as stored, and a time, what a gate's report of a place does. No store, no clock."""

from __future__ import annotations

from gateway.device_model import (
    DeviceGrant,
    DevicePlace,
    PlaceClaim,
    PlaceDecision,
    decide_claim,
    longest_playing,
)

NOW_MS = 100_000
SINCE_MS = NOW_MS - 30_000
GRANT = DeviceGrant("g1", "sess", "browser:1", 1_000)
OTHER = DevicePlace("g2", "10.0.0.2", 80_000, 95_000)
STALE = DevicePlace("g2", "10.0.0.9", 10_000, SINCE_MS)  # seen exactly 30 s ago: over


def claim(places: list[DevicePlace], *, grant: DeviceGrant | None = GRANT,
          address: str = "10.0.0.1", limit: int = 2) -> PlaceDecision:
    return decide_claim("sess", grant, places, address, NOW_MS, SINCE_MS, limit)


def test_a_new_place_is_taken_while_there_is_room() -> None:
    assert claim([OTHER]) == PlaceDecision(
        PlaceClaim.ADMITTED, DevicePlace("g1", "10.0.0.1", NOW_MS, NOW_MS), ())


def test_a_place_held_already_is_renewed_never_moved_back() -> None:
    mine = DevicePlace("g1", "10.0.0.1", 70_000, 90_000)
    assert claim([mine, OTHER]).write == DevicePlace("g1", "10.0.0.1", 70_000, NOW_MS)
    ahead = DevicePlace("g1", "10.0.0.1", 70_000, NOW_MS + 500)  # another instance's report
    assert claim([ahead, OTHER]) == PlaceDecision(PlaceClaim.ADMITTED, ahead, ())


def test_full_when_the_limit_is_held_by_other_places() -> None:
    # The same grant from another address is another place: a shared link counts per place.
    elsewhere = DevicePlace("g1", "10.0.0.3", 90_000, 90_000)
    assert claim([elsewhere, OTHER]) == PlaceDecision(PlaceClaim.FULL, None, ())
    assert claim([elsewhere, OTHER], limit=0).claim is PlaceClaim.ADMITTED  # no limit


def test_places_not_seen_in_the_window_are_forgotten_and_free_their_room() -> None:
    decision = claim([STALE, OTHER], limit=2)
    assert decision.claim is PlaceClaim.ADMITTED and decision.forget == (STALE,)
    # Its own place gone stale is taken anew, from now.
    mine_stale = DevicePlace("g1", "10.0.0.1", 1_000, SINCE_MS)
    assert claim([mine_stale]) == PlaceDecision(
        PlaceClaim.ADMITTED, DevicePlace("g1", "10.0.0.1", NOW_MS, NOW_MS), (mine_stale,))


def test_an_ended_unknown_or_foreign_grant_is_ended_and_still_forgets() -> None:
    ended = DeviceGrant("g1", "sess", "browser:1", 1_000, ended_at_ms=50_000)
    foreign = DeviceGrant("g1", "another-sess", "browser:1", 1_000)
    for grant in (ended, None, foreign):
        assert claim([STALE, OTHER], grant=grant) == PlaceDecision(
            PlaceClaim.ENDED, None, (STALE,))


def test_the_longest_playing_place_names_its_grant() -> None:
    assert longest_playing([OTHER, DevicePlace("g3", "10.0.0.5", 70_000, 99_000)]) == "g3"
    assert longest_playing([]) is None
