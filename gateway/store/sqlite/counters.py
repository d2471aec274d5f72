"""Rate-limit counters of an embedded store: in this process's memory. An embedded store
serves one process, so that is where every hit is counted; nothing is written to the
file, and a restart starts every window afresh."""

from __future__ import annotations

from gateway.store.base import Counters

# Beyond this many buckets, old windows are dropped wholesale rather than one by one.
_MAX_BUCKETS = 100_000


class MemoryCounters(Counters):
    def __init__(self) -> None:
        self._hits: dict[str, tuple[int, int]] = {}  # bucket -> (window, count)

    async def count_hit(self, bucket: str, window_s: int, now_ms: int) -> int:
        window = now_ms // (window_s * 1000)
        if len(self._hits) > _MAX_BUCKETS:
            self._hits = {key: hit for key, hit in self._hits.items() if hit[0] == window}
        seen_window, count = self._hits.get(bucket, (window, 0))
        count = count + 1 if seen_window == window else 1
        self._hits[bucket] = (window, count)
        return count
