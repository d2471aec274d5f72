"""Signed tokens: forgeries fail, keys rotate without cutting anyone off, and a token
made for one purpose is worthless for another."""

from __future__ import annotations

import pytest

from gateway.tokens import Keyring, ValidTokenCache

OLD, NEW = b"o" * 40, b"n" * 40


def test_round_trip_and_url_safety() -> None:
    ring = Keyring(NEW, purpose="hls")
    token = ring.sign("sessionABC", "demo", "1800000000000")
    assert ring.verify(token) == ["sessionABC", "demo", "1800000000000"]
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: t.replace(".", "", 1),
    lambda t: "deadbeef" + t[8:],
    lambda t: t + ".x",
    lambda t: "",
    lambda t: "a" * 2000,
])
def test_forged_tokens_fail(mutate: object) -> None:
    ring = Keyring(NEW, purpose="hls")
    token = ring.sign("s", "demo", "1")
    assert ring.verify(mutate(token)) is None  # type: ignore[operator]


def test_changing_a_field_breaks_the_signature() -> None:
    ring = Keyring(NEW, purpose="hls")
    kid, _, signature = ring.sign("s", "demo", "1").split(".")
    other_body = ring.sign("s", "konser", "1").split(".")[1]
    assert ring.verify(f"{kid}.{other_body}.{signature}") is None


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() -> None:
    old_token = Keyring(OLD, purpose="viewer").sign("alice", "1")
    rotated = Keyring(NEW, [OLD], purpose="viewer")
    assert rotated.verify(old_token) == ["alice", "1"]
    assert rotated.sign("bob", "2").split(".")[0] == rotated.current_kid
    assert rotated.current_kid != old_token.split(".")[0]
    assert Keyring(NEW, purpose="viewer").verify(old_token) is None  # once retired


def test_purposes_do_not_mix() -> None:
    cookie = Keyring(NEW, purpose="viewer").sign("alice", "1")
    assert Keyring(NEW, purpose="hls").verify(cookie) is None


def test_separator_in_a_field_is_refused() -> None:
    with pytest.raises(ValueError):
        Keyring(NEW, purpose="hls").sign("a|b")


def test_the_verification_cache_keeps_only_valid_tokens_and_is_bounded() -> None:
    ring = Keyring(NEW, purpose="viewer")
    cache = ValidTokenCache(ring.verify, max_entries=100)
    for number in range(1000):  # junk, as an attacker sends it: free, and forgotten
        assert cache(f"{ring.current_kid}.junk{number}.sig") is None
    assert len(cache) == 0
    tokens = [ring.sign(f"viewer{number}", "0") for number in range(300)]
    for number, token in enumerate(tokens):
        assert cache(token) == [f"viewer{number}", "0"]
    assert len(cache) == 100  # the most recently used valid ones
    assert cache(tokens[0]) == ["viewer0", "0"]  # evicted, so verified again: still valid
