"""The /media/ and /keys/ grammar: what the rewriter writes, the routes read back, and
nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.keys import KeyId, KeySchedule
from gateway.delivery.urls import (
    ClearFile,
    EncryptedSegment,
    KeyTarget,
    MediaUrls,
    PlaylistFile,
    is_playlist_path,
    is_segment_path,
    key_target,
    key_uri,
    playlist_url,
)

URLS = MediaUrls(b"s" * 32)
KEY = KeyId(120, 60)
# The gate's allow-list: components of [A-Za-z0-9._-] that do not start with a dot.
segment_paths = st.from_regex(
    r"[a-z0-9_-]{1,12}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,8}){0,3}\.(ts|m4s|aac)", fullmatch=True)
key_ids = st.builds(lambda sequence, per_key: KeySchedule(per_key).key_id(sequence),
                    st.integers(min_value=0, max_value=2**64 - 1),
                    st.integers(min_value=1, max_value=9_999_999))


def rest(url: str, stream_id: str = "show") -> str:
    prefix = f"/media/{stream_id}/"
    assert url.startswith(prefix)
    return url[len(prefix):]


@given(key_ids, segment_paths)
def test_a_segment_url_reads_back_as_its_key_and_origin_path(key_id: KeyId, path: str) -> None:
    url = URLS.encrypted_segment("show", key_id, path)
    assert url.startswith(f"/media/show/k/{key_id}/") and url.endswith(f"/{path}")
    target = URLS.target("show", rest(url))
    assert isinstance(target, EncryptedSegment)
    assert target.key_id == key_id and target.media.path == path


def test_a_segment_url_is_the_same_on_every_instance() -> None:
    assert (MediaUrls(b"s" * 32).encrypted_segment("show", KEY, "v0/seg7.ts")
            == URLS.encrypted_segment("show", KEY, "v0/seg7.ts"))


def other_tag(url: str) -> str:
    parts = url.split("/")  # "", "media", stream, "k", key id, tag, path...
    parts[5] = ("B" if parts[5][0] == "A" else "A") + parts[5][1:]
    return "/".join(parts)


@pytest.mark.parametrize("change", [
    lambda url: url.replace("/k/120-60/", "/k/60-60/"),  # an old key id: the attack
    lambda url: url.replace("/k/120-60/", "/k/120-120/"),
    lambda url: url.replace("seg7.ts", "seg8.ts"),
    lambda url: url.replace("/show/", "/other/"),
    other_tag,
    lambda url: url.replace("/k/", "/c/"),
])
def test_a_segment_url_the_service_did_not_write_names_nothing(
        change: Callable[[str], str]) -> None:
    url = change(URLS.encrypted_segment("show", KEY, "v0/seg7.ts"))
    stream_id = url.split("/")[2]
    assert URLS.target(stream_id, url[len(f"/media/{stream_id}/"):]) is None


def test_another_secret_reads_no_url() -> None:
    url = URLS.encrypted_segment("show", KEY, "seg7.ts")
    assert MediaUrls(b"t" * 32).target("show", rest(url)) is None
    with pytest.raises(ValueError):
        MediaUrls(b"short")


def test_a_clear_url_names_only_what_was_written_clear() -> None:
    url = URLS.clear_file("show", "v0/init.mp4")
    target = URLS.target("show", rest(url))
    assert isinstance(target, ClearFile) and target.media.path == "v0/init.mp4"
    # The clear route cannot be pointed at a media segment.
    tag = rest(url).split("/")[1]
    assert URLS.target("show", f"c/{tag}/v0/seg1.m4s") is None
    assert URLS.target("show", f"k/120-60/{tag}/v0/init.mp4") is None


@pytest.mark.parametrize(("rest_", "expected"), [
    ("index.m3u8", PlaylistFile),
    ("v0/index.m3u8", PlaylistFile),
    ("t/abc.DEF-_1/v0/index.m3u8", PlaylistFile),
    ("k/index.m3u8", None),  # reserved first components
    ("c/index.m3u8", None),
    ("t/index.m3u8", None),
    ("t//index.m3u8", None),
    ("t/bad%token/index.m3u8", None),
    ("seg0.ts", None),  # a segment only under k/ or c/
    ("../index.m3u8", None),
    ("v0/../index.m3u8", None),
    ("/index.m3u8", None),
    (".hidden.m3u8", None),
    ("index.m3u8?x=1", None),
    ("k", None), ("c", None), ("t", None), ("", None),
])
def test_playlist_urls(rest_: str, expected: type | None) -> None:
    target = URLS.target("show", rest_)
    if expected is None:
        assert target is None
    else:
        assert isinstance(target, expected)


def test_a_playlist_url_carries_its_token() -> None:
    url = playlist_url("show", "v0/index.m3u8", "abc.def")
    assert url == "/media/show/t/abc.def/v0/index.m3u8"
    target = URLS.target("show", rest(url))
    assert target == PlaylistFile(target.media, "abc.def")  # type: ignore[union-attr]
    assert target.media.path == "v0/index.m3u8"  # type: ignore[union-attr]
    assert playlist_url("show", "index.m3u8") == "/media/show/index.m3u8"


@pytest.mark.parametrize("path", ["index.m3u8", "keys/k.key", "seg.txt", "../seg.ts",
                                  "a//seg.ts", "seg.TS.exe"])
def test_segment_urls_are_for_media_files_only(path: str) -> None:
    assert not is_segment_path(path)


def test_path_kinds() -> None:
    assert is_segment_path("v0/seg1.ts") and is_segment_path("init.mp4")
    assert is_segment_path("subs/en/0.vtt")
    assert is_playlist_path("v0/index.m3u8") and not is_playlist_path("t/index.m3u8")


def test_key_uris_read_back() -> None:
    assert key_uri("show", KEY) == "/keys/show/120-60"
    assert key_uri("show", KEY, "abc.def") == "/keys/show/t/abc.def/120-60"
    assert key_target("120-60") == KeyTarget(KEY, None)
    assert key_target("t/abc.def/120-60") == KeyTarget(KEY, "abc.def")


@pytest.mark.parametrize("rest_", ["", "120", "120-60/", "120-60/x", "t/abc/", "t//120-60",
                                   "t/abc def/120-60", "t/abc", "0120-60", "121-60",
                                   "t/abc/t/abc/120-60", "../120-60"])
def test_key_uris_out_of_grammar_name_nothing(rest_: str) -> None:
    assert key_target(rest_) is None


@pytest.mark.parametrize("token", ['a"b', "a\nb", "a/b", "", "x" * 513])
def test_a_token_that_is_not_one_is_never_written(token: str) -> None:
    with pytest.raises(ValueError):
        key_uri("show", KEY, token)
    with pytest.raises(ValueError):
        playlist_url("show", "index.m3u8", token)
