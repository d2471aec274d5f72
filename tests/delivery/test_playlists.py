"""Playlists rewritten for keys delivery, read back by the `m3u8` library (an independent
parser) and line by line where order matters."""

from __future__ import annotations

import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.keys import KeyId, KeySchedule, KeyWindow, segment_iv
from gateway.delivery.playlists import (
    RewrittenPlaylist,
    UnsupportedPlaylist,
    drop_segments_before,
    resolve_uri,
    rewrite_playlist,
)
from gateway.delivery.urls import ClearFile, EncryptedSegment, MediaUrls
from gateway.settings import PACKAGE_DIR

URLS = MediaUrls(b"s" * 32)


def rewrite(text: str, *, path: str = "index.m3u8", rotation_s: float = 120,
            token: str | None = None, stream_id: str = "show") -> RewrittenPlaylist:
    return rewrite_playlist(text, stream_id=stream_id, playlist_path=path, urls=URLS,
                            rotation_seconds=rotation_s, token=token)


def media(*body: str, sequence: int | None = None, target_s: int = 2) -> str:
    head = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target_s}"]
    if sequence is not None:
        head.append(f"#EXT-X-MEDIA-SEQUENCE:{sequence}")
    return "\n".join([*head, *body]) + "\n"


def segments(names: list[str], duration: str = "2.000000") -> list[str]:
    return [line for name in names for line in (f"#EXTINF:{duration},", name)]


def origin_of(url: str, stream_id: str = "show") -> EncryptedSegment | ClearFile:
    prefix = f"/media/{stream_id}/"
    assert url.startswith(prefix)
    target = URLS.target(stream_id, url[len(prefix):])
    assert isinstance(target, EncryptedSegment | ClearFile), url
    return target


def key_before_each_map(text: str) -> list[str]:
    """The METHOD in effect at each EXT-X-MAP: what a player applies to that init."""
    method, found = "NONE", []
    for line in text.splitlines():
        if line.startswith("#EXT-X-KEY:"):
            method = line.split("METHOD=")[1].split(",")[0]
        elif line.startswith("#EXT-X-MAP:"):
            found.append(method)
    return found


# Media playlists

def test_the_bundled_demo_playlist() -> None:
    text = (PACKAGE_DIR / "demo" / "live" / "loop.m3u8").read_text()
    result = rewrite(text, stream_id="demo")
    parsed = m3u8.loads(result.text)
    assert [segment.uri.rsplit("/", 1)[1] for segment in parsed.segments] == [
        "seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts"]
    for sequence, segment in enumerate(parsed.segments):
        target = origin_of(segment.uri, "demo")
        assert isinstance(target, EncryptedSegment)
        assert target.key_id == KeyId(0, 60) and target.media.path == f"seg{sequence}.ts"
        assert segment.key.method == "AES-128" and segment.key.uri == "/keys/demo/0-60"
        assert segment.key.iv == "0x" + segment_iv("demo", KeyId(0, 60),
                                                   f"seg{sequence}.ts").hex().upper()
    assert parsed.is_endlist and parsed.playlist_type == "vod"
    assert result.key_ids == (KeyId(0, 60),)
    assert result.window == KeyWindow(60, 0, 0)


def test_every_segment_gets_its_own_key_line_just_before_its_extinf() -> None:
    text = media("#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-DISCONTINUITY-SEQUENCE:3",
                 "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T20:00:00.000+07:00",
                 "#EXTINF:2.000,", "seg0.ts",
                 "# a comment the packager wrote",
                 "#EXT-X-DISCONTINUITY",
                 "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T20:00:10.000+07:00",
                 '#EXT-X-DATERANGE:ID="ad",START-DATE="2030-01-01T20:00:10.000+07:00"',
                 "#EXT-X-CUE-OUT:DURATION=30",
                 "#EXTINF:2.000,", "seg1.ts",
                 "#EXT-X-GAP", "#EXTINF:2.000,", "seg2.ts",
                 "#EXT-X-ENDLIST", sequence=7)
    lines = rewrite(text, rotation_s=4).text.splitlines()
    keys = [line for line in lines if line.startswith("#EXT-X-KEY")]
    assert len(keys) == 3
    assert keys[0].startswith('#EXT-X-KEY:METHOD=AES-128,URI="/keys/show/6-2",IV=0x')
    assert keys[1].startswith('#EXT-X-KEY:METHOD=AES-128,URI="/keys/show/8-2",IV=0x')
    expected_order = [
        "#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:7",
        "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-DISCONTINUITY-SEQUENCE:3",
        "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T20:00:00.000+07:00", keys[0],
        "#EXTINF:2.000,", URLS.encrypted_segment("show", KeyId(6, 2), "seg0.ts"),
        "# a comment the packager wrote", "#EXT-X-DISCONTINUITY",
        "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T20:00:10.000+07:00",
        '#EXT-X-DATERANGE:ID="ad",START-DATE="2030-01-01T20:00:10.000+07:00"',
        "#EXT-X-CUE-OUT:DURATION=30", keys[1],
        "#EXTINF:2.000,", URLS.encrypted_segment("show", KeyId(8, 2), "seg1.ts"),
        "#EXT-X-GAP", keys[2],
        "#EXTINF:2.000,", URLS.encrypted_segment("show", KeyId(8, 2), "seg2.ts"),
        "#EXT-X-ENDLIST"]
    assert lines == expected_order


def test_a_live_window_names_the_same_key_and_url_for_a_segment_on_every_refresh() -> None:
    def window(first: int) -> str:
        return media(*segments([f"live{n}.ts" for n in range(first, first + 6)]),
                     sequence=first, target_s=2)

    seen: dict[str, tuple[str, str]] = {}
    keys_used = set()
    for first in range(1000, 1040):  # a minute and a half of refreshes
        result = rewrite(window(first), rotation_s=12)
        lines = result.text.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("/media/"):
                name = line.rsplit("/", 1)[1]
                entry = (lines[index - 2], line)  # its key line and its URL
                assert seen.setdefault(name, entry) == entry
                keys_used.add(origin_of(line).key_id)  # type: ignore[union-attr]
        newest = KeySchedule(6).key_id(first + 5)
        assert result.window == KeyWindow(6, newest.index - 1, newest.index)
        assert all(key_id in result.window for key_id in result.key_ids)
    # 1000 .. 1044 under 6 segments (12 s) a key: keys 996-6 .. 1044-6
    assert sorted(key.first_sequence for key in keys_used) == list(range(996, 1045, 6))


def test_an_event_playlist_is_live_until_it_ends() -> None:
    body = ["#EXT-X-PLAYLIST-TYPE:EVENT", *segments([f"s{n}.ts" for n in range(100)])]
    live = rewrite(media(*body), rotation_s=20)
    assert live.window == KeyWindow(10, 8, 9)
    ended = rewrite(media(*body, "#EXT-X-ENDLIST"), rotation_s=20)
    assert ended.window == KeyWindow(10, 0, 9)
    assert len(ended.key_ids) == 10 and all(key in ended.window for key in ended.key_ids)


def test_segments_are_resolved_against_the_playlists_own_directory() -> None:
    text = media(*segments(["seg0.ts", "./seg1.ts", "../shared/seg2.ts", "deeper/seg3.ts"]))
    parsed = m3u8.loads(rewrite(text, path="hls/v0/index.m3u8").text)
    assert [origin_of(segment.uri).media.path for segment in parsed.segments] == [
        "hls/v0/seg0.ts", "hls/v0/seg1.ts", "hls/shared/seg2.ts", "hls/v0/deeper/seg3.ts"]


def test_a_path_token_goes_into_key_uris_only() -> None:
    parsed = m3u8.loads(rewrite(media(*segments(["a.ts"])), token="abc.def").text)
    assert parsed.segments[0].key.uri == "/keys/show/t/abc.def/0-60"
    assert "abc.def" not in parsed.segments[0].uri
    with pytest.raises(ValueError):
        rewrite(media(*segments(["a.ts"])), token='x",URI="https://evil.example/k')


@pytest.mark.parametrize(("version", "expected"), [
    (None, "#EXT-X-VERSION:2"), ("1", "#EXT-X-VERSION:2"), ("7", "#EXT-X-VERSION:7")])
def test_the_version_allows_an_iv(version: str | None, expected: str) -> None:
    head = ["#EXTM3U", *([f"#EXT-X-VERSION:{version}"] if version else []),
            "#EXT-X-TARGETDURATION:2"]
    text = "\n".join([*head, *segments(["a.ts"])]) + "\n"
    lines = rewrite(text).text.splitlines()
    assert lines[:2] == ["#EXTM3U", expected]
    assert sum(line.startswith("#EXT-X-VERSION") for line in lines) == 1


def test_crlf_blank_lines_and_stray_spaces_are_read() -> None:
    text = "#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n\r\n#EXTINF:2,\r\n  seg0.ts  \r\n"
    parsed = m3u8.loads(rewrite(text).text)
    assert origin_of(parsed.segments[0].uri).media.path == "seg0.ts"


def test_an_origin_key_that_says_none_is_dropped_not_refused() -> None:
    text = media("#EXT-X-KEY:METHOD=NONE", *segments(["a.ts"]))
    assert rewrite(text).text.count("#EXT-X-KEY:METHOD=AES-128") == 1
    assert "METHOD=NONE" not in rewrite(text).text


def test_an_empty_live_playlist_names_no_keys() -> None:
    result = rewrite(media(sequence=5))
    assert result.key_ids == () and "#EXT-X-MEDIA-SEQUENCE:5" in result.text


def test_sequence_numbers_up_to_two_to_the_64() -> None:
    last = 2**64 - 1
    result = rewrite(media(*segments(["a.ts"]), sequence=last), rotation_s=2)
    assert result.key_ids == (KeyId(last, 1),)
    with pytest.raises(UnsupportedPlaylist):
        rewrite(media(*segments(["a.ts", "b.ts"]), sequence=last))


# fMP4 and subtitles

def test_init_sections_are_clear_and_never_under_a_key() -> None:
    text = media('#EXT-X-MAP:URI="init-a.mp4"', *segments(["a0.m4s", "a1.m4s"]),
                 "#EXT-X-DISCONTINUITY", '#EXT-X-MAP:URI="init-b.mp4"',
                 *segments(["b0.m4s"]), "#EXT-X-ENDLIST")
    result = rewrite(text, path="v0/index.m3u8")
    assert key_before_each_map(result.text) == ["NONE", "NONE"]
    lines = result.text.splitlines()
    none_at = lines.index("#EXT-X-KEY:METHOD=NONE")
    assert lines[none_at + 1].startswith('#EXT-X-MAP:URI="/media/show/c/')
    assert lines[none_at + 2].startswith("#EXT-X-KEY:METHOD=AES-128")
    parsed = m3u8.loads(result.text)
    inits = [origin_of(segment.init_section.uri) for segment in parsed.segments]
    assert all(isinstance(init, ClearFile) for init in inits)
    assert [init.media.path for init in inits] == ["v0/init-a.mp4"] * 2 + ["v0/init-b.mp4"]
    assert all(segment.key.method == "AES-128" for segment in parsed.segments)


def test_a_map_written_after_extinf_still_comes_before_the_key() -> None:
    text = media(*segments(["a0.m4s"]), "#EXTINF:2,", '#EXT-X-MAP:URI="init.mp4"', "a1.m4s")
    result = rewrite(text)
    assert key_before_each_map(result.text) == ["NONE"]
    assert all(segment.key.method == "AES-128" for segment in m3u8.loads(result.text).segments)


def test_other_map_attributes_are_kept() -> None:
    text = media('#EXT-X-MAP:URI="init.mp4",X-CUSTOM="yes"', *segments(["a.m4s"]))
    assert ',X-CUSTOM="yes"' in rewrite(text).text


def test_subtitles_are_served_in_the_clear() -> None:
    text = media(*segments([f"sub{n}.vtt" for n in range(3)]), "#EXT-X-ENDLIST")
    result = rewrite(text, path="subs/en.m3u8")
    assert "#EXT-X-KEY" not in result.text and result.key_ids == ()
    parsed = m3u8.loads(result.text)
    assert [origin_of(segment.uri).media.path for segment in parsed.segments] == [
        "subs/sub0.vtt", "subs/sub1.vtt", "subs/sub2.vtt"]
    assert all(isinstance(origin_of(segment.uri), ClearFile) for segment in parsed.segments)


def test_a_clear_segment_after_an_encrypted_one_says_so() -> None:
    result = rewrite(media(*segments(["a.ts", "b.vtt", "c.ts"])))
    parsed = m3u8.loads(result.text)
    assert [segment.key.method if segment.key else "NONE" for segment in parsed.segments] == [
        "AES-128", "NONE", "AES-128"]


# Low-latency HLS

LOW_LATENCY = "\n".join([
    "#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:4",
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=24",
    "#EXT-X-PART-INF:PART-TARGET=0.33334", "#EXT-X-MEDIA-SEQUENCE:266",
    '#EXT-X-MAP:URI="init.mp4"',
    "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T20:00:00.000Z",
    "#EXTINF:4.00008,", "fileSequence266.mp4",
    '#EXT-X-PART:DURATION=0.33334,URI="filePart267.0.mp4",INDEPENDENT=YES',
    '#EXT-X-PART:DURATION=0.33334,URI="filePart267.1.mp4"',
    "#EXTINF:4.00008,", "fileSequence267.mp4",
    "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T20:00:08.000Z",
    '#EXT-X-PART:DURATION=0.33334,URI="filePart268.0.mp4",INDEPENDENT=YES',
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="filePart268.1.mp4"',
    '#EXT-X-RENDITION-REPORT:URI="../1M/waitForMSN.php",LAST-MSN=267,LAST-PART=1',
]) + "\n"


def test_low_latency_parts_are_dropped_leaving_a_regular_live_playlist() -> None:
    result = rewrite(LOW_LATENCY)
    for gone in ("PART", "PRELOAD-HINT", "RENDITION-REPORT", "SERVER-CONTROL", "filePart",
                 "2030-01-01T20:00:08"):  # the in-progress segment's own tags go too
        assert gone not in result.text
    parsed = m3u8.loads(result.text)
    assert [origin_of(segment.uri).media.path for segment in parsed.segments] == [
        "fileSequence266.mp4", "fileSequence267.mp4"]
    assert parsed.media_sequence == 266 and not parsed.is_endlist
    assert parsed.segments[0].program_date_time is not None
    assert result.text.splitlines()[-1].startswith("/media/show/k/")


# Refused

@pytest.mark.parametrize(("text", "why"), [
    (media('#EXT-X-KEY:METHOD=AES-128,URI="k.key"', *segments(["a.ts"])), "encrypts"),
    (media('#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k.key",KEYFORMAT="x"', *segments(["a.ts"])),
     "encrypts"),
    (media(*segments(["a.ts"]), '#EXT-X-KEY:METHOD=AES-128,URI="k.key"', "#EXTINF:2,",
           "b.ts"), "encrypts"),
    (media("#EXTINF:2,", "#EXT-X-BYTERANGE:1000@0", "all.ts"), "byte-range"),
    (media('#EXT-X-MAP:URI="all.mp4",BYTERANGE="800@0"', *segments(["a.m4s"])), "byte-range"),
    (media("#EXT-X-I-FRAMES-ONLY", *segments(["a.ts"])), "I-frame"),
    (media("#EXT-X-SKIP:SKIPPED-SEGMENTS=3", *segments(["a.ts"])), "delta"),
    (media('#EXT-X-DEFINE:NAME="x",VALUE="y"', *segments(["{$x}.ts"])), "variable"),
    (media('#EXT-X-MAP:URI=init.mp4', *segments(["a.m4s"])), "unquoted"),
    (media("#EXT-X-MAP:URI", *segments(["a.m4s"])), "malformed"),
    (media('#EXT-X-MAP:BYTES="1"', *segments(["a.m4s"])), "without URI"),
    (media('#EXT-X-MAP:URI="index.m3u8"', *segments(["a.m4s"])), "init section"),
    (media(*segments(["a.ts"]), "#EXT-X-MEDIA-SEQUENCE:4"), "misplaced"),
    (media(*segments(["a.ts"]), sequence=-1), "malformed"),
    (media("seg.ts"), "without EXTINF"),
    ("#EXTM3U\n#EXTINF:2,\na.ts\n", "TARGETDURATION"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:0\n", "target duration"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:two\n", "target duration"),
    ("#EXTM3U\n#EXT-X-VERSION:x\n#EXT-X-TARGETDURATION:2\n", "version"),
    ("#EXT-X-TARGETDURATION:2\n#EXTM3U\n", "#EXTM3U"),
    ("", "#EXTM3U"),
    ("<html>not found</html>", "#EXTM3U"),
    ("#EXTM3U\n#EXT-X-VERSION:3\n", "neither"),
    (media('#EXT-X-STREAM-INF:BANDWIDTH=1', "v.m3u8"), "both"),
])
def test_what_keys_delivery_cannot_serve_is_refused(text: str, why: str) -> None:
    with pytest.raises(UnsupportedPlaylist, match=why):
        rewrite(text)


@pytest.mark.parametrize("uri", [
    "http://cdn.example/seg.ts", "https://cdn.example/seg.ts", "//cdn.example/seg.ts",
    "/abs/seg.ts", "../seg.ts", "a/../../seg.ts", "seg.ts?token=1", "seg.ts#t=1",
    "seg%2e.ts", "..%2fseg.ts", "a\\seg.ts", "a//seg.ts", "file:seg.ts", "data:,x",
    "javascript:alert(1)", "seg.txt", "seg.key", "index.m3u8", ".hidden.ts",
])
def test_segment_uris_that_leave_the_stream_or_are_not_media_are_refused(uri: str) -> None:
    with pytest.raises(UnsupportedPlaylist):
        rewrite(media(*segments([uri])))


def test_uris_resolve_like_a_player_would() -> None:
    assert resolve_uri("index.m3u8", "a.ts") == "a.ts"
    assert resolve_uri("x/y/index.m3u8", "../z/./a.ts") == "x/z/a.ts"
    with pytest.raises(UnsupportedPlaylist):
        resolve_uri("x/index.m3u8", "../../a.ts")


# Master playlists

MASTER = "\n".join([
    "#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS",
    '#EXT-X-SESSION-DATA:DATA-ID="com.example.title",VALUE="Konser"',
    '#EXT-X-SESSION-DATA:DATA-ID="com.example.lyrics",URI="lyrics.json"',
    '#EXT-X-CONTENT-STEERING:SERVER-URI="https://steer.example/manifest.json"',
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="id",DEFAULT=YES,URI="audio/id.m3u8"',
    '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="sub",NAME="en",URI="subs/../subs/en.m3u8"',
    '#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="cc1",INSTREAM-ID="CC1"',
    '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO="aud",SUBTITLES="sub"',
    "360p/index.m3u8",
    '#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,AUDIO="aud",SUBTITLES="sub"',
    "./720p/index.m3u8",
    '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="360p/iframes.m3u8"',
]) + "\n"


def test_a_master_keeps_its_relative_uris_as_written() -> None:
    result = rewrite(MASTER, path="hls/master.m3u8")
    assert result.key_ids == () and result.window is None
    lines = result.text.splitlines()
    for kept in ("360p/index.m3u8", "./720p/index.m3u8", 'URI="audio/id.m3u8"',
                 'URI="subs/../subs/en.m3u8"', 'INSTREAM-ID="CC1"', 'VALUE="Konser"',
                 "#EXT-X-INDEPENDENT-SEGMENTS"):
        assert any(kept in line for line in lines), kept
    for dropped in ("I-FRAME", "lyrics.json", "CONTENT-STEERING"):
        assert dropped not in result.text
    parsed = m3u8.loads(result.text)
    assert [variant.uri for variant in parsed.playlists] == ["360p/index.m3u8",
                                                             "./720p/index.m3u8"]


@pytest.mark.parametrize("variant", [
    "../other/index.m3u8", "/index.m3u8", "https://cdn.example/index.m3u8",
    "k/index.m3u8", "t/index.m3u8", "c/index.m3u8", "v0/seg.ts", "index.m3u8?x=1",
])
def test_a_master_may_name_only_playlists_inside_the_stream(variant: str) -> None:
    text = f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{variant}\n"
    with pytest.raises(UnsupportedPlaylist):
        rewrite(text)
    rendition = f'#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="a",URI="{variant}"\n'
    with pytest.raises(UnsupportedPlaylist):
        rewrite(rendition)


def test_a_master_in_a_directory_may_name_a_sibling_directory() -> None:
    text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n../v0/index.m3u8\n"
    assert "../v0/index.m3u8" in rewrite(text, path="hls/master.m3u8").text


@pytest.mark.parametrize(("text", "why"), [
    ('#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI="k.key"\n'
     "#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "encrypts"),
    ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\nw.m3u8\n", "announces"),
    ('#EXTM3U\n#EXT-X-DEFINE:NAME="a",VALUE="b"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n',
     "variable"),
    ('#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=a.m3u8\n', "unquoted"),
    ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "without its URI"),
])
def test_masters_keys_delivery_cannot_serve_are_refused(text: str, why: str) -> None:
    with pytest.raises(UnsupportedPlaylist, match=why):
        rewrite(text)


# Any media playlist

names = st.from_regex(r"[a-z0-9]{1,10}(/[a-z0-9_-]{1,10}){0,2}\.(ts|m4s|aac)", fullmatch=True)


@given(first=st.integers(min_value=0, max_value=2**40),
       entries=st.lists(st.tuples(names, st.booleans(), st.booleans()), min_size=1,
                        max_size=40, unique_by=lambda entry: entry[0]),
       rotation_s=st.integers(min_value=1, max_value=600),
       target_s=st.integers(min_value=1, max_value=12), ended=st.booleans())
def test_any_media_playlist_keeps_its_segments_each_under_its_scheduled_key(
        first: int, entries: list[tuple[str, bool, bool]], rotation_s: int, target_s: int,
        ended: bool) -> None:
    body = []
    for name, discontinuity, dated in entries:
        if discontinuity:
            body.append("#EXT-X-DISCONTINUITY")
        if dated:
            body.append("#EXT-X-PROGRAM-DATE-TIME:2030-01-01T00:00:00Z")
        body += ["#EXTINF:1.5,", name]
    if ended:
        body.append("#EXT-X-ENDLIST")
    result = rewrite(media(*body, sequence=first, target_s=target_s), rotation_s=rotation_s)
    parsed = m3u8.loads(result.text)
    schedule = KeySchedule.of(rotation_s, target_s)
    assert len(parsed.segments) == len(entries)
    for offset, (segment, (name, discontinuity, _)) in enumerate(
            zip(parsed.segments, entries, strict=True)):
        target = origin_of(segment.uri)
        assert isinstance(target, EncryptedSegment) and target.media.path == name
        assert target.key_id == schedule.key_id(first + offset)
        assert segment.key.uri == f"/keys/show/{target.key_id}"
        assert segment.key.iv == "0x" + segment_iv("show", target.key_id, name).hex().upper()
        assert segment.discontinuity == discontinuity
    assert list(result.key_ids) == sorted(set(result.key_ids))
    assert result.window is not None and result.key_ids[-1] in result.window
    assert parsed.is_endlist == ended
    assert all(key_id in result.window for key_id in result.key_ids) or not ended


# Dropping the oldest segments (a live window naming keys that cannot be made any more)

def test_dropped_segments_move_the_sequences_on_and_keep_the_init_in_effect() -> None:
    text = "\n".join([
        "#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:100", "#EXT-X-DISCONTINUITY-SEQUENCE:7",
        '#EXT-X-MAP:URI="a/init.mp4"', "#EXTINF:2.0,", "a/100.m4s",
        "#EXT-X-DISCONTINUITY", "#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:02Z",
        "#EXTINF:2.0,", "a/101.m4s",
        '#EXT-X-DATERANGE:ID="ad",START-DATE="2027-01-15T08:00:03Z"',
        "#EXTINF:2.0,", "a/102.m4s", "#EXTINF:2.0,", "a/103.m4s"]) + "\n"
    kept = drop_segments_before(text, 102)
    parsed = m3u8.loads(kept)
    assert parsed.media_sequence == 102 and parsed.discontinuity_sequence == 8
    assert [segment.uri for segment in parsed.segments] == ["a/102.m4s", "a/103.m4s"]
    assert parsed.segments[0].init_section.uri == "a/init.mp4"
    assert parsed.target_duration == 2 and parsed.version == 7
    assert '#EXT-X-DATERANGE:ID="ad"' in kept  # the playlist's own tags stay
    assert "PROGRAM-DATE-TIME" not in kept and "#EXT-X-DISCONTINUITY\n" not in kept
    # And it is still a playlist keys delivery serves, from where it now starts.
    rewritten = rewrite(kept, rotation_s=4)
    assert rewritten.key_ids == (KeyId(102, 2),)


def test_dropping_nothing_changes_no_segment() -> None:
    text = media(*segments(["a.ts", "b.ts"]), sequence=10)
    kept = drop_segments_before(text, 10)
    assert [s.uri for s in m3u8.loads(kept).segments] == ["a.ts", "b.ts"]
    assert m3u8.loads(kept).media_sequence == 10
