"""The catalog's optional event fields: parsed exactly, and a bad one stops start-up
with one line naming the stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalog import Catalog, CatalogError

BASE = 'id = "ev"\ntitle = "Event"\nprice = 25000\norigin = "https://o.example/live/"\n'


def load(tmp_path: Path, extra: str) -> Catalog:
    path = tmp_path / "streams.toml"
    path.write_text("[[stream]]\n" + BASE + extra)
    return Catalog.load(path)


def test_event_fields_from_toml_datetimes_and_strings(tmp_path: Path) -> None:
    (tmp_path / "posters").mkdir()
    (tmp_path / "posters" / "ev.jpg").write_bytes(b"\xff\xd8jpeg")
    stream = load(tmp_path, 'starts_at = 2026-12-01T19:00:00+07:00\n'
                            'ends_at = "2026-12-01T22:00:00Z"\n'
                            'description = "Konser"\nposter = "posters/ev.jpg"\n'
                            'access_seconds = 10800\n').get("ev")
    assert stream is not None
    assert stream.starts_at_ms == 1_796_126_400_000  # 12:00 UTC
    assert stream.ends_at_ms == 1_796_162_400_000
    assert stream.poster_file == (tmp_path / "posters" / "ev.jpg").resolve()
    assert stream.poster_url is None
    assert (stream.description, stream.access_seconds_or(7200)) == ("Konser", 10800)


@pytest.mark.parametrize(("extra", "message"), [
    ('starts_at = 2026-12-01T19:00:00\n', "starts_at must be an RFC 3339 date-time with an"),
    ('starts_at = "tomorrow"\n', "starts_at must be an RFC 3339 date-time"),
    ('starts_at = 2026-12-01T19:00:00Z\nends_at = 2026-12-01T18:00:00Z\n',
     "ends_at must be after starts_at"),
    ('poster = "../secret.jpg"\n', "poster '../secret.jpg' is not a file under"),
    ('poster = "ftp://x/y.jpg"\n', "poster must be a file name or an https:// URL"),
    ('access_seconds = 1\n', "access_seconds must be whole seconds"),
    ('description = ""\n', "description must be text"),
])
def test_bad_event_fields_name_the_stream(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path.parent / "secret.jpg").write_bytes(b"x")
    with pytest.raises(CatalogError) as raised:
        load(tmp_path, extra)
    assert f"stream #1: ev: {message}" in str(raised.value)
