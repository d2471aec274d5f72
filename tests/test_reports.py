"""The operator's reports (gateway/reports.py) over a real store, on each backend: who
holds access and who plays now, per stream, and what short payments should have been."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.ledger import LedgerQuery, LedgerStatus
from gateway.reports import Audience, Reports
from gateway.store.base import Store
from gateway.store.redis import open_redis
from gateway.store.sqlite import open_sqlite
from tests.conftest import REDIS_URL, FakeClock, redis_keyspace
from tests.store.conftest import T0, fill_ledger, pay, pending


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "redis":
        async with redis_keyspace() as prefix:
            opened = await open_redis(REDIS_URL, prefix)
            yield opened
            await opened.close()
        return
    opened = await open_sqlite(str(tmp_path / "store.db"))
    yield opened
    await opened.close()


def reports(store: Store, clock: FakeClock) -> Reports:
    return Reports(store.ledger, store.sessions, store.grants, clock, "simulator")


async def test_the_audience_is_who_holds_access_and_the_places_playing_it(
        store: Store, clock: FakeClock) -> None:
    clock.now_ms = T0
    made = [pending(user, stream, at_ms=T0)
            for user, stream in (("a", "demo"), ("b", "demo"), ("c", "news"), ("d", "demo"))]
    for index, session in enumerate(made[:3]):
        await store.sessions.insert_pending(session, T0)
        await pay(store.sessions, session, at_ms=T0 + 1000, event_id=f"e{index}")
    await store.sessions.insert_pending(made[3], T0)  # pending: holds nothing
    clock.advance(60)
    assert await reports(store, clock).audience_now() == Audience(
        paid={"demo": 2, "news": 1}, playing={})
    grants = []
    for index, session in enumerate(made[:3]):
        grant, _ = await store.grants.grant_for_device(
            session.session_id, f"device:d{index}", clock(), f"grant{index:012d}", clock())
        grants.append(grant)
    # Two places for the first purchase (a shared link), one for the third; the second
    # has a grant that nothing has played.
    for grant, address in ((grants[0], "10.0.0.1"), (grants[0], "10.0.0.2"),
                           (grants[2], "10.0.0.3")):
        await store.grants.claim_place(grant.session_id, grant.grant_id, address, clock(),
                                       clock() - 30_000, 0)
    assert await reports(store, clock).audience_now() == Audience(
        paid={"demo": 2, "news": 1}, playing={"demo": 2, "news": 1})
    # An ended grant frees its places; a purchase revoked plays nowhere.
    clock.advance(1)
    await store.grants.end_grant(grants[2].grant_id, clock())
    assert (await reports(store, clock).audience_now()).playing == {"demo": 2}
    await store.sessions.end_paid_session(made[0].session_id, clock())
    assert await reports(store, clock).audience_now() == Audience(
        paid={"demo": 1, "news": 1}, playing={})


async def test_a_place_plays_for_thirty_seconds_after_it_was_last_seen(
        store: Store, clock: FakeClock) -> None:
    clock.now_ms = T0
    session = pending("a", "demo", at_ms=T0)
    await store.sessions.insert_pending(session, T0)
    await pay(store.sessions, session, at_ms=T0)
    grant, _ = await store.grants.grant_for_device(session.session_id, "device:tv", T0, "g1",
                                                   T0)
    await store.grants.claim_place(session.session_id, grant.grant_id, "10.0.0.1", T0,
                                   T0 - 30_000, 2)
    clock.advance(29.999)
    assert (await reports(store, clock).audience_now()).playing == {"demo": 1}
    clock.advance(0.001)
    assert (await reports(store, clock).audience_now()).playing == {}


async def test_prices_say_what_each_entry_should_have_paid(store: Store,
                                                           clock: FakeClock) -> None:
    await fill_ledger(store.sessions)
    attention = await reports(store, clock).ledger(LedgerQuery(status=LedgerStatus.ATTENTION),
                                                   10)
    assert [entry.reason for entry in attention] == ["unknown_transaction", "amount_mismatch"]
    short = attention[1]
    assert short.session_id is not None
    # The unknown transaction has no session, so no price.
    assert await reports(store, clock).prices(attention) == {short.session_id: 5000}
