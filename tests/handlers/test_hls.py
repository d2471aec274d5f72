"""The media routes' own matching (handlers/hls.py:MediaResource) against aiohttp's: it
splits paths instead of running aiohttp's pattern, and must match exactly the same
paths, with the same values, or a URL would reach the gate that aiohttp would refuse
(or the other way round)."""

from __future__ import annotations

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.handlers.hls import MediaResource

TEMPLATES = (
    "/hls/{stream_id}/t/{token}/{path:.+}",  # the route table's two
    "/hls/{stream_id}/{path:.+}",
    "/bare/{name}",  # bench/bare_in_gateway.py's
)
TOKEN = "9ccbe2e4.STVzeXo1T1pETmswWXloN3VYUEpiQXxkaXJ8MTc5NTk2NTQ4OTU5NH.elX7h2rfN1gTiXJm"

# Paths made of what decides a match: the literal segments, empty segments, braces,
# percent-escapes (%2F and %25 are the ones aiohttp unquotes) and newlines.
_SEGMENTS = st.one_of(
    st.sampled_from(["t", "dir", TOKEN, "index.m3u8", "seg1.ts", ""]),
    st.text(alphabet="ab.{}%2F5\nt/", max_size=5))
PATHS = st.tuples(st.sampled_from(["hls", "hls/dir/t", "hls/d{/t", "bare", "x", ""]),
                  st.lists(_SEGMENTS, max_size=6)
                  ).map(lambda parts: "/" + "/".join([parts[0], *parts[1]]))


@settings(max_examples=3000, deadline=None, database=None)
@given(path=PATHS)
def test_the_media_routes_match_what_aiohttp_matches(path: str) -> None:
    for template in TEMPLATES:
        ours = MediaResource(template, name="ours")
        aiohttps = web.DynamicResource(template, name="theirs")
        assert ours._match(path) == aiohttps._match(path), (template, path)


@pytest.mark.parametrize(("path", "expected"), [
    (f"/hls/dir/t/{TOKEN}/index.m3u8", {"stream_id": "dir", "token": TOKEN,
                                        "path": "index.m3u8"}),
    (f"/hls/dir/t/{TOKEN}/v1/seg1.ts", {"stream_id": "dir", "token": TOKEN,
                                        "path": "v1/seg1.ts"}),
    (f"/hls/dir/t/{TOKEN}/", None),  # no file
    ("/hls//t/x/index.m3u8", None),  # no stream
    ("/hls/dir/t/a%2Fb/index.m3u8", {"stream_id": "dir", "token": "a/b",
                                     "path": "index.m3u8"}),
    ("/hls/d{r/t/x/index.m3u8", None),
])
def test_the_token_form_is_split_as_aiohttp_would(path: str,
                                                   expected: dict[str, str] | None) -> None:
    template = TEMPLATES[0]
    assert MediaResource(template, name="ours")._match(path) == expected
    assert web.DynamicResource(template)._match(path) == expected


def test_a_route_with_a_pattern_it_cannot_split_is_refused() -> None:
    with pytest.raises(ValueError, match="only a last variable"):
        MediaResource("/hls/{stream_id:[a-z]+}/{path:.+}", name="x")
    with pytest.raises(ValueError, match="only a last variable"):
        MediaResource("/hls/{stream_id}/{n:[0-9]+}", name="y")
