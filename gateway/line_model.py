"""The line of buyers waiting for a QR (SPEC, "A crowd at the start of a show"): its
entries, and the rule that makes it fair by address. Pure: the store keeps the line
and applies this rule atomically (store/*/line.py); gateway/line.py drives it.

Fairness is start-time fair queuing over client addresses. The line has a virtual
clock: the fair score of the entry served last. A new entry's score is one more than
the later of that clock and its address's last score, and the line is served by
score (then by arrival). So an address with 20,000 entries waiting holds scores
v+1 ... v+20,000, while a buyer from another address arrives at about v+1: behind at
most one entry of each address that is waiting, never behind the whole flood.
"""

from __future__ import annotations

from dataclasses import dataclass

# The lane key of the line's own virtual clock, which no client address can be.
CLOCK_LANE = "\x00clock"


@dataclass(frozen=True, slots=True)
class LineEntry:
    """One buyer waiting: a viewer and a stream (at most one entry for the two), the
    address they asked from, and where they stand."""

    user_id: str
    stream_id: str
    address: str
    joined_at_ms: int
    score: int  # the fair score (`fair_score`)
    seq: int  # arrival: breaks ties between addresses


@dataclass(frozen=True, slots=True)
class LinePlace:
    """Where a buyer stands: 1 is next. `joined` says whether this call put them
    there (False: they were in line already, and keep their place)."""

    entry: LineEntry
    position: int
    joined: bool


def fair_score(virtual_clock: int, lane_last: int, *, front: bool = False) -> int:
    """The score of a new entry (see the module's docstring). `front`: someone the
    provider turned away for going too fast, who goes ahead of everyone waiting (whose
    scores are all above the clock, less one)."""
    if front:
        return virtual_clock - 1
    return max(virtual_clock, lane_last) + 1
