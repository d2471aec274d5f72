"""The contract of the line of buyers waiting for a QR (`Line`), on every backend: one
entry per viewer and stream, served fair by address (start-time fair queuing, see
gateway/line_model.py), each entry popped once, put back where it stood; with a shared
store, one line for every instance."""

from __future__ import annotations

import asyncio

from gateway.line_model import Standing
from gateway.store.base import Store
from tests.store.conftest import T0


async def test_joining_twice_keeps_the_first_place(store: Store) -> None:
    line = store.line
    first = await line.join("alice", "demo", "10.0.0.1", T0)
    assert (first.position, first.joined) == (1, True)
    await line.join("bob", "demo", "10.0.0.2", T0)
    again = await line.join("alice", "demo", "10.0.0.1", T0 + 5)
    assert (again.position, again.joined, again.entry) == (1, False, first.entry)
    assert await line.length() == 2
    other_stream = await line.join("alice", "konser-malam", "10.0.0.1", T0)
    assert other_stream.joined  # one place per viewer *and* stream


async def test_a_flood_from_one_address_does_not_push_others_back(store: Store) -> None:
    line = store.line
    for n in range(200):
        await line.join(f"bot{n}", "demo", "10.0.0.66", T0)
    alice = await line.join("alice", "demo", "10.0.0.1", T0 + 1)
    bob = await line.join("bob", "demo", "10.0.0.2", T0 + 2)
    # Behind one entry of the flooding address, not behind all 200 of them.
    assert (alice.position, bob.position) == (2, 3)
    # Nobody can still come in ahead of them; the flood's later entries, anybody can.
    assert alice.settled and bob.settled
    served = [(await line.pop()) for _ in range(4)]
    assert [entry.user_id for entry in served if entry] == ["bot0", "alice", "bob", "bot1"]
    # Arriving later, another address again goes ahead of the rest of the flood.
    carol = await line.join("carol", "demo", "10.0.0.3", T0 + 3)
    assert carol.position == 2
    standings = await line.standings([("carol", "demo"), ("bot2", "demo"), ("bot3", "demo"),
                                      ("nobody", "demo")])
    assert standings == {("carol", "demo"): Standing(2, True),
                         ("bot2", "demo"): Standing(1, True),
                         ("bot3", "demo"): Standing(3, False)}
    # Asked about many at once (read another way by an embedded store): the same.
    many = await line.standings([(f"bot{n}", "demo") for n in range(2, 30)])
    assert many[("bot2", "demo")] == Standing(1, True)
    assert many[("bot29", "demo")] == Standing(29, False)
    assert len(many) == 28


async def test_a_place_behind_others_of_its_address_is_settled_once_its_turn_nears(
        store: Store) -> None:
    line = store.line
    first, second, third = [await line.join(f"nat{n}", "demo", "100.64.0.1", T0)
                            for n in range(3)]
    # A newcomer from elsewhere would come in behind the first, ahead of the others.
    assert (first.settled, second.settled, third.settled) == (True, False, False)
    await line.pop()  # the line's clock moves on a round
    standings = await line.standings([("nat1", "demo"), ("nat2", "demo")])
    assert standings == {("nat1", "demo"): Standing(1, True),
                         ("nat2", "demo"): Standing(2, False)}
    await line.pop()
    again = await line.join("nat2", "demo", "100.64.0.1", T0 + 9)
    assert (again.position, again.settled, again.joined) == (1, True, False)


async def test_an_address_with_many_viewers_is_served_in_its_order(store: Store) -> None:
    line = store.line
    for n in range(5):
        await line.join(f"viewer{n}", "demo", "10.0.0.1", T0 + n)
    served = [await line.pop() for _ in range(5)]
    assert [entry.user_id for entry in served if entry] == [f"viewer{n}" for n in range(5)]
    assert await line.length() == 0


async def test_each_entry_is_popped_once(store: Store) -> None:
    for n in range(30):
        await store.line.join(f"v{n}", "demo", f"10.0.0.{n % 3}", T0)
    popped = await asyncio.gather(*(store.line.pop() for _ in range(40)))
    users = [entry.user_id for entry in popped if entry is not None]
    assert sorted(users) == sorted(f"v{n}" for n in range(30))
    assert await store.line.pop() is None


async def test_put_back_returns_an_entry_to_where_it_stood(store: Store) -> None:
    line = store.line
    for name in ("alice", "bob", "carol"):
        await line.join(name, "demo", f"addr-{name}", T0)
    alice = await line.pop()
    assert alice is not None
    await line.put_back(alice)  # the provider said 429: back at the head
    assert await line.standings([("alice", "demo")]) == {("alice", "demo"): Standing(1, True)}
    await line.put_back(alice)  # twice changes nothing
    assert await line.length() == 3
    front = await line.join("dave", "demo", "addr-dave", T0, front=True)
    assert front.position == 1  # turned away by the provider on a direct request
    await line.leave("bob", "demo")
    assert ("bob", "demo") not in await line.standings([("bob", "demo")])


async def test_a_shared_store_has_one_line(two_handles: tuple[Store, Store]) -> None:
    first, second = two_handles
    await first.line.join("alice", "demo", "10.0.0.1", T0)
    again = await second.line.join("alice", "demo", "10.0.0.1", T0)
    assert not again.joined
    popped = await asyncio.gather(first.line.pop(), second.line.pop())
    assert sorted(entry is None for entry in popped) == [False, True]
