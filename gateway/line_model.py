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
class Standing:
    """Where a buyer stands now: 1 is next. `settled`: nobody who comes later can go
    ahead of them (`is_settled`), so their position only falls and a wait worked out
    from it is an estimate; otherwise buyers arriving later from other addresses may
    still go ahead (that is the fairness), and such a wait is the least one."""

    position: int
    settled: bool


@dataclass(frozen=True, slots=True)
class LinePlace:
    """Where a buyer stands: 1 is next. `joined` says whether this call put them
    there (False: they were in line already, and keep their place)."""

    entry: LineEntry
    position: int
    joined: bool
    settled: bool

    @property
    def standing(self) -> Standing:
        return Standing(self.position, self.settled)


def fair_score(virtual_clock: int, lane_last: int, *, front: bool = False) -> int:
    """The score of a new entry (see the module's docstring). `front`: someone the
    provider turned away for going too fast, who goes ahead of everyone waiting (whose
    scores are all above the clock, less one)."""
    if front:
        return virtual_clock - 1
    return max(virtual_clock, lane_last) + 1


def is_settled(score: int, virtual_clock: int) -> bool:
    """Whether an entry can still be overtaken. A newcomer's score is at least the
    clock plus one, and the clock never goes back; between equal scores arrival
    decides. So an entry scored at most one past the clock has everyone who will ever
    be ahead of it in line already (a buyer the provider turned away, put back at the
    front, excepted); one scored further on (behind others of its own address) does
    not."""
    return score <= virtual_clock + 1
