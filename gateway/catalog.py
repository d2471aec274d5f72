"""The stream catalog: a TOML file with one `[[stream]]` table per stream.

```toml
[[stream]]
id = "demo"                 # URL-safe, lower case
title = "Demo"
price = 1000                # whole rupiah, > 0
origin = "https://origin.example/live/demo/"   # or file:///dir/, or file:dir/ (relative
                                               # to this file)
playlist = "index.m3u8"     # master or media playlist, default index.m3u8
loop = false                # file origins only: serve the VOD playlist `loop_source`
loop_source = "loop.m3u8"   # as an endless live stream whose window follows the clock
# Optional, for events (SPEC "Stream catalog"):
starts_at = 2026-12-01T19:00:00+07:00  # RFC 3339 (a TOML datetime or a string): tickets
ends_at = 2026-12-01T22:00:00+07:00    # bought before it open at starts_at
description = "..."         # up to 1000 characters
poster = "posters/demo.jpg" # an image under this catalog's folder, or an https:// URL
access_seconds = 10800      # this stream's own access window (default: the setting)
```

Only the gate ever sees `origin`; the public API lists id, title, price and the optional
event fields.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from gateway.ids import STREAM_ID

MAX_PRICE_RUPIAH = 10_000_000  # QRIS transaction ceiling at the common providers
_PLAYLIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.m3u8")
POSTER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                ".webp": "image/webp", ".avif": "image/avif", ".gif": "image/gif"}
MAX_POSTER_BYTES = 5 * 1024 * 1024
_KNOWN_KEYS = frozenset({"id", "title", "price", "origin", "playlist", "loop", "loop_source",
                         "starts_at", "ends_at", "description", "poster", "access_seconds"})


class CatalogError(ValueError):
    """A catalog problem, phrased as one line naming the file and the stream."""


@dataclass(frozen=True, slots=True)
class Stream:
    stream_id: str
    title: str
    price: int
    # An http(s) URL ending in "/", or None for a local directory origin.
    origin_url: str | None
    origin_dir: Path | None
    playlist: str = "index.m3u8"
    loop_source: str | None = None  # set when the gate plays a VOD playlist as live
    starts_at_ms: int | None = None
    ends_at_ms: int | None = None
    description: str | None = None
    # Exactly one of these when the stream has a poster: a local file, or a remote URL.
    poster_file: Path | None = None
    poster_url: str | None = None
    access_seconds: int | None = None  # None: the GATEWAY_ACCESS_SECONDS setting

    def access_seconds_or(self, default_seconds: int) -> int:
        return default_seconds if self.access_seconds is None else self.access_seconds


class Catalog:
    def __init__(self, streams: list[Stream]) -> None:
        self._streams = {stream.stream_id: stream for stream in streams}

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def __iter__(self) -> Iterator[Stream]:
        return iter(self._streams.values())

    def __len__(self) -> int:
        return len(self._streams)

    def poster_origins(self) -> str:
        """The origins of remote posters, space-led, for the pages' img-src."""
        origins = sorted({f"{parts.scheme}://{parts.netloc}" for parts in (
            urlsplit(stream.poster_url) for stream in self if stream.poster_url)})
        return "".join(" " + origin for origin in origins)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            with path.open("rb") as fh:
                document = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError(f"{path}: {exc}") from None
        tables = document.get("stream")
        if not isinstance(tables, list) or not tables:
            raise CatalogError(f"{path}: no [[stream]] tables")
        streams: list[Stream] = []
        for index, table in enumerate(tables):
            where = f"{path}: stream #{index + 1}"
            try:
                stream = _parse_stream(table, path.parent.resolve())
            except CatalogError as exc:
                raise CatalogError(f"{where}: {exc}") from None
            if any(s.stream_id == stream.stream_id for s in streams):
                raise CatalogError(f"{where}: duplicate id {stream.stream_id!r}")
            streams.append(stream)
        return cls(streams)


def _parse_stream(table: object, base_dir: Path) -> Stream:
    if not isinstance(table, dict):
        raise CatalogError("not a table")
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        raise CatalogError(f"unknown key {sorted(unknown)[0]!r}")
    stream_id = table.get("id")
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise CatalogError("id must be lower-case letters, digits, '-' or '_' (max 64)")
    title = table.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 200:
        raise CatalogError(f"{stream_id}: title must be text of 1 to 200 characters")
    price = table.get("price")
    if isinstance(price, bool) or not isinstance(price, int) or not 0 < price <= MAX_PRICE_RUPIAH:
        raise CatalogError(f"{stream_id}: price must be whole rupiah, 1 to {MAX_PRICE_RUPIAH}")
    playlist = table.get("playlist", "index.m3u8")
    if not isinstance(playlist, str) or not _PLAYLIST_NAME.fullmatch(playlist):
        raise CatalogError(f"{stream_id}: playlist must be a .m3u8 file name")
    origin = table.get("origin")
    if not isinstance(origin, str):
        raise CatalogError(f"{stream_id}: origin is required")
    parts = urlsplit(origin)
    origin_url: str | None = None
    origin_dir: Path | None = None
    if parts.scheme in ("http", "https"):
        if not parts.hostname or not origin.endswith("/") or parts.query or parts.fragment:
            raise CatalogError(f"{stream_id}: origin must be an http(s) URL ending in '/'")
        origin_url = origin
    elif parts.scheme == "file":
        if parts.netloc or not parts.path.endswith("/"):
            raise CatalogError(f"{stream_id}: origin must be file:///dir/ or file:dir/")
        origin_dir = (base_dir / parts.path).resolve()
        if not origin_dir.is_dir():
            raise CatalogError(f"{stream_id}: origin directory {origin_dir} does not exist")
    else:
        raise CatalogError(f"{stream_id}: origin must be http(s)://.../ or file:///dir/")
    loop_source: str | None = None
    if table.get("loop", False) is True:
        if origin_dir is None:
            raise CatalogError(f"{stream_id}: loop needs a file origin")
        loop_source = table.get("loop_source", "loop.m3u8")
        if not isinstance(loop_source, str) or not _PLAYLIST_NAME.fullmatch(loop_source):
            raise CatalogError(f"{stream_id}: loop_source must be a .m3u8 file name")
        if not (origin_dir / loop_source).is_file():
            raise CatalogError(f"{stream_id}: {origin_dir / loop_source} does not exist")
    elif table.get("loop", False) is not False:
        raise CatalogError(f"{stream_id}: loop must be true or false")
    starts_at_ms = _instant(table, "starts_at", stream_id)
    ends_at_ms = _instant(table, "ends_at", stream_id)
    if starts_at_ms is not None and ends_at_ms is not None and ends_at_ms <= starts_at_ms:
        raise CatalogError(f"{stream_id}: ends_at must be after starts_at")
    description = table.get("description")
    if description is not None and (not isinstance(description, str)
                                    or not 1 <= len(description) <= 1000):
        raise CatalogError(f"{stream_id}: description must be text of 1 to 1000 characters")
    poster_file, poster_url = _poster(table.get("poster"), base_dir, stream_id)
    access_seconds = table.get("access_seconds")
    if access_seconds is not None and (
            isinstance(access_seconds, bool) or not isinstance(access_seconds, int)
            or not 5 <= access_seconds <= 30 * 86400):
        raise CatalogError(f"{stream_id}: access_seconds must be whole seconds, 5 to 2592000")
    return Stream(stream_id, title, price, origin_url, origin_dir, playlist, loop_source,
                  starts_at_ms=starts_at_ms, ends_at_ms=ends_at_ms, description=description,
                  poster_file=poster_file, poster_url=poster_url,
                  access_seconds=access_seconds)


def _instant(table: dict[str, object], key: str, stream_id: str) -> int | None:
    """An RFC 3339 instant, written as a TOML offset datetime or as a string. A time
    without an offset is refused: "19:00" means different moments in WIB and WITA."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise CatalogError(f"{stream_id}: {key} must be an RFC 3339 date-time") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise CatalogError(f"{stream_id}: {key} must be an RFC 3339 date-time with an offset"
                           " (e.g. 2026-12-01T19:00:00+07:00)")
    return int(value.timestamp() * 1000)


def _poster(value: object, base_dir: Path, stream_id: str) -> tuple[Path | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{stream_id}: poster must be a file name or an https:// URL")
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise CatalogError(f"{stream_id}: poster URL has no host")
        return None, value
    if parts.scheme:
        raise CatalogError(f"{stream_id}: poster must be a file name or an https:// URL")
    path = (base_dir / value).resolve()
    # Only files under the catalog's folder: the catalog is trusted, typos are not.
    if not path.is_relative_to(base_dir) or not path.is_file():
        raise CatalogError(f"{stream_id}: poster {value!r} is not a file under {base_dir}")
    if path.suffix.lower() not in POSTER_TYPES:
        raise CatalogError(f"{stream_id}: poster must be one of {sorted(POSTER_TYPES)}")
    if path.stat().st_size > MAX_POSTER_BYTES:
        raise CatalogError(f"{stream_id}: poster is larger than 5 MiB")
    return path, None
