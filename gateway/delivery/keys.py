"""Which key encrypts which segment, and the keys themselves.

- `KeySchedule`: a segment's key follows from its media sequence number alone, so every
  instance, on every refresh of a live playlist, names the same key for it: the segment
  is encrypted once and cached under one URL. A key covers `segments_per_key`
  consecutive sequence numbers, about one rotation of media.
- `KeyId`: the text that names a key in URLs and in the store, "{first}-{count}": the
  first media sequence number the key covers and how many it covers.
- `segment_iv`: each segment's IV, from its stream, key id and path.
- `StreamKeys`: the keys an instance knows, in memory, over a `KeyStore` that every
  instance shares. Keys are created only for ids a playlist being written names within
  its `KeyWindow`; everything else is looked up, never created.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

KEY_BYTES = 16  # AES-128
IV_BYTES = 16
DEFAULT_ROTATION_SECONDS = 120
# A live playlist's window can straddle a rotation: it names the key before the current
# one too. That one is normally made when it was current; if this service started (or
# the store lost it) since, it may still be made. Anything older is looked up only.
KEYS_BEHIND = 1
MAX_SEGMENTS_PER_KEY = 9_999_999
MAX_MEDIA_SEQUENCE = 2**64 - 1  # HLS's decimal-integer

# Canonical decimals only (no sign, no leading zeros, ASCII), so one key has one name.
_KEY_ID = re.compile(r"(0|[1-9][0-9]{0,19})-([1-9][0-9]{0,6})")


@dataclass(frozen=True, slots=True, order=True)
class KeyId:
    """The key for media sequence numbers `first_sequence` .. `first_sequence + segments - 1`.

    Both numbers are in the name so that a name never means two different runs of
    segments: streams whose renditions have different segment durations, or a rotation
    setting changed between deployments, give different names rather than reusing an
    old key (and with it, an old viewer's copy of it) for newer media."""

    first_sequence: int
    segments: int

    def __post_init__(self) -> None:
        if not 1 <= self.segments <= MAX_SEGMENTS_PER_KEY:
            raise ValueError(f"segments per key out of range: {self.segments}")
        if not 0 <= self.first_sequence <= MAX_MEDIA_SEQUENCE:
            raise ValueError(f"media sequence out of range: {self.first_sequence}")
        if self.first_sequence % self.segments:
            raise ValueError("a key starts at a multiple of its length")

    @property
    def index(self) -> int:
        return self.first_sequence // self.segments

    def __str__(self) -> str:
        return f"{self.first_sequence}-{self.segments}"

    @classmethod
    def parse(cls, text: str) -> KeyId | None:
        """The key id `text` names, or None when it is not one (untrusted input)."""
        match = _KEY_ID.fullmatch(text)
        if match is None:
            return None
        try:
            return cls(int(match.group(1)), int(match.group(2)))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class KeyWindow:
    """The keys a playlist being written may have created: those of its own schedule
    (same `segments_per_key`) with an index from `lowest_index` to `highest_index`."""

    segments_per_key: int
    lowest_index: int
    highest_index: int

    def __contains__(self, key_id: object) -> bool:
        return (isinstance(key_id, KeyId) and key_id.segments == self.segments_per_key
                and self.lowest_index <= key_id.index <= self.highest_index)


@dataclass(frozen=True, slots=True)
class KeySchedule:
    segments_per_key: int

    @classmethod
    def of(cls, rotation_seconds: float, target_duration_s: float) -> KeySchedule:
        """The schedule of a media playlist with EXT-X-TARGETDURATION `target_duration_s`:
        a new key about every `rotation_seconds` of media."""
        if not rotation_seconds > 0 or not target_duration_s > 0:
            raise ValueError("rotation and target duration must be positive")
        per_key = max(1, round(rotation_seconds / target_duration_s))
        return cls(min(per_key, MAX_SEGMENTS_PER_KEY))

    def key_index(self, media_sequence: int) -> int:
        return media_sequence // self.segments_per_key

    def key_id(self, media_sequence: int) -> KeyId:
        first = self.key_index(media_sequence) * self.segments_per_key
        return KeyId(first, self.segments_per_key)

    def window(self, oldest_sequence: int, newest_sequence: int, *, ended: bool) -> KeyWindow:
        """The keys a playlist listing `oldest_sequence` .. `newest_sequence` may create.

        A playlist that has ended (VOD, or an event that is over) is all current: every
        key it names may be made. A live one may make only the key of its newest
        segment and the `KEYS_BEHIND` before it, so a key that went out of use is never
        made again, and a long DVR window cannot mint a key for each rotation it holds."""
        newest = self.key_index(newest_sequence)
        lowest = self.key_index(oldest_sequence) if ended else max(0, newest - KEYS_BEHIND)
        return KeyWindow(self.segments_per_key, lowest, newest)


def segment_iv(stream_id: str, key_id: KeyId, path: str) -> bytes:
    """The IV a segment is encrypted with: a function of its URL's parts (stream, key id,
    path under the stream), so every instance, and the playlist, agree on it, and no two
    segments under one key share one. It is public (the playlist states it) and need not
    be secret: the plaintext is the origin's media, never chosen by a client."""
    digest = hashlib.sha256(b"\0".join((b"stream-paygate segment iv", stream_id.encode(),
                                        str(key_id).encode(), path.encode())))
    return digest.digest()[:IV_BYTES]


def new_random_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


class KeyStore(Protocol):
    """Where keys live so every instance answers the same (the service's store)."""

    async def get(self, stream_id: str, key_id: str) -> bytes | None:
        """The key, or None when none was ever created."""
        ...

    async def create(self, stream_id: str, key_id: str, key: bytes) -> bytes:
        """Keep `key` unless the stream already has one under `key_id`; return the one
        kept. Atomic across instances: the first writer wins, and every caller, the
        losers too, gets the winner's bytes."""
        ...


class CorruptKey(Exception):
    """The store answered something that is not a 16-byte key."""


class StreamKeys:
    """The keys of every stream, as this instance knows them.

    Keys never change once made, so each is asked of the store once and then kept (the
    `capacity` most recently used). Concurrent requests for a key this instance does not
    know yet share one store call. A key that is not there is not remembered: it may be
    made by another instance a moment later."""

    def __init__(self, store: KeyStore, *, capacity: int = 4096,
                 new_key: Callable[[], bytes] = new_random_key) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._store = store
        self._capacity = capacity
        self._new_key = new_key
        self._known: OrderedDict[tuple[str, KeyId], bytes] = OrderedDict()
        # (stream, key id, may create) -> the store call in flight
        self._asking: dict[tuple[str, KeyId, bool], asyncio.Future[bytes | None]] = {}

    async def get(self, stream_id: str, key_id: KeyId) -> bytes | None:
        """The key if it was ever made (by any instance); never makes one. For key
        requests and segment requests: what a client names is looked up only."""
        return await self._key(stream_id, key_id, create=False)

    async def get_or_create(self, stream_id: str, key_id: KeyId,
                            window: KeyWindow) -> bytes | None:
        """The key, made now if it does not exist yet and `window` allows it; None when
        it does not exist and may not be made. For writing a playlist that names it."""
        return await self._key(stream_id, key_id, create=key_id in window)

    async def prepare(self, stream_id: str, key_ids: Iterable[KeyId],
                      window: KeyWindow) -> list[KeyId]:
        """Make sure the keys a playlist names exist before it is served, so that its
        segments and keys can be answered by any instance; return those that do not
        exist and may not be made (a live window's old keys this service never saw)."""
        wanted = list(dict.fromkeys(key_ids))
        found = await asyncio.gather(*(self.get_or_create(stream_id, key_id, window)
                                       for key_id in wanted))
        return [key_id for key_id, key in zip(wanted, found, strict=True) if key is None]

    def known(self, stream_id: str, key_id: KeyId) -> bytes | None:
        """The key if this instance already holds it, without waiting."""
        return self._known.get((stream_id, key_id))

    async def _key(self, stream_id: str, key_id: KeyId, *, create: bool) -> bytes | None:
        known = self._known.get((stream_id, key_id))
        if known is not None:
            self._known.move_to_end((stream_id, key_id))
            return known
        asking = self._asking.get((stream_id, key_id, create))
        if asking is None:
            asking = asyncio.ensure_future(self._ask_store(stream_id, key_id, create))
            self._asking[(stream_id, key_id, create)] = asking
            asking.add_done_callback(
                lambda done: self._done_asking((stream_id, key_id, create), done))
        # One caller giving up (a client gone) must not cancel the others' answer.
        return await asyncio.shield(asking)

    def _done_asking(self, asking: tuple[str, KeyId, bool],
                     done: asyncio.Future[bytes | None]) -> None:
        self._asking.pop(asking, None)
        if not done.cancelled():
            done.exception()  # retrieved here, raised to every waiter

    async def _ask_store(self, stream_id: str, key_id: KeyId, create: bool) -> bytes | None:
        if create:
            key: bytes | None = await self._store.create(stream_id, str(key_id),
                                                         self._new_key())
        else:
            key = await self._store.get(stream_id, str(key_id))
        if key is None:
            return None
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise CorruptKey(f"stream {stream_id!r} key {key_id}: not {KEY_BYTES} bytes")
        self._known[(stream_id, key_id)] = key
        self._known.move_to_end((stream_id, key_id))
        while len(self._known) > self._capacity:
            self._known.popitem(last=False)
        return key
