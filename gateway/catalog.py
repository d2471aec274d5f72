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
```

Only the gate ever sees `origin`; the public API lists id, title and price.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

STREAM_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_PRICE_RUPIAH = 10_000_000  # QRIS transaction ceiling at the common providers
_PLAYLIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.m3u8")


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


class Catalog:
    def __init__(self, streams: list[Stream]) -> None:
        self._streams = {stream.stream_id: stream for stream in streams}

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def __iter__(self) -> Iterator[Stream]:
        return iter(self._streams.values())

    def __len__(self) -> int:
        return len(self._streams)

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
    unknown = set(table) - {"id", "title", "price", "origin", "playlist", "loop", "loop_source"}
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
    return Stream(stream_id, title, price, origin_url, origin_dir, playlist, loop_source)
