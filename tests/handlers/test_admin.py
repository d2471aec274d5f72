"""The operator's console over HTTP, on both stores: sign-in and its cookie, throttling,
CSRF on every action, the dashboard's figures, the ledger with settling and CSV, sessions
found and revoked. Nothing here can make a session paid."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.i18n import rupiah
from gateway.keys import PROVIDER
from gateway.operators import FAILED_SIGN_IN_WINDOW_MS, MAX_FAILED_SIGN_INS, SIGN_IN_SECONDS
from gateway.settings import Settings
from tests.conftest import API_KEY, AppFactory, FakeClock, ViewerClient, make_settings

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """An operator's browser: its own cookie jar, same-origin forms."""

    def __init__(self, viewer: ViewerClient) -> None:
        self.http: TestClient[Any, Any] = viewer.http
        self.origin = str(self.http.make_url("")).rstrip("/")
        self.csrf = ""

    async def sign_in(self, key: str = API_KEY, name: str = "Sari", *, expect: int = 303,
                      origin: str | None = None) -> ClientResponse:
        response = await self.http.post(
            "/admin/sign-in", data={"name": name, "key": key, "next": "/admin/payments"},
            headers={"Origin": origin or self.origin}, allow_redirects=False)
        assert response.status == expect, (response.status, await response.text())
        return response

    async def get(self, path: str, *, expect: int = 200, **params: str) -> str:
        response = await self.http.get(path, params=params, allow_redirects=False,
                                       headers={"Accept": "text/html"})
        text = await response.text()
        assert response.status == expect, (response.status, text[:2000])
        found = CSRF.search(text)
        if found:
            self.csrf = found.group(1)
        return text

    async def post(self, path: str, data: dict[str, str], *, expect: int = 303,
                   headers: dict[str, str] | None = None, csrf: bool = True) -> str:
        form = {"csrf": self.csrf, **data} if csrf else data
        response = await self.http.post(
            path, data=form, allow_redirects=False,
            headers={"Origin": self.origin, "Accept": "text/html"} if headers is None
            else headers)
        text = await response.text()
        assert response.status == expect, (response.status, text[:2000])
        return text


@pytest.fixture
async def console(make_viewer: AppFactory) -> Console:
    return Console(await make_viewer())


async def signed_in(console: Console) -> Console:
    await console.sign_in()
    await console.get("/admin")
    return console


async def paid(viewer: ViewerClient, stream_id: str = "demo", **pay: Any) -> dict[str, Any]:
    qr = await viewer.generate_qris(stream_id)
    await viewer.pay(qr["trxId"], **pay)
    return qr


async def test_the_console_needs_a_sign_in_and_keeps_it_in_a_strict_cookie(
        console: Console) -> None:
    response = await console.http.get("/admin/payments", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/admin/sign-in?next=")
    page = await console.get("/admin/sign-in")
    assert 'type="password"' in page
    signed = await console.sign_in()
    assert signed.headers["Location"] == "/admin/payments"
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith("operator=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/admin",
                      f"Max-Age={SIGN_IN_SECONDS}"):
        assert attribute in cookie
    assert API_KEY not in cookie
    page = await console.get("/admin/payments")
    assert "Sari" in page and console.csrf
    headers = (await console.http.get("/admin/payments")).headers
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in headers["Content-Security-Policy"]


async def test_a_wrong_key_is_refused_and_sets_no_cookie(console: Console) -> None:
    response = await console.sign_in("x" * 30, expect=401)
    assert "Set-Cookie" not in response.headers
    assert "Kunci operator salah" in await response.text()
    await console.get("/admin", expect=303)


async def test_the_sign_in_lasts_a_working_day(console: Console, clock: FakeClock) -> None:
    await console.sign_in()
    clock.advance(SIGN_IN_SECONDS - 60)
    await console.get("/admin")
    clock.advance(120)
    await console.get("/admin", expect=303)


async def test_failed_sign_ins_are_throttled_per_address(console: Console,
                                                          clock: FakeClock) -> None:
    for _ in range(MAX_FAILED_SIGN_INS):
        await console.sign_in("wrong-key-wrong-key-wrong", expect=401)
    throttled = await console.sign_in(expect=429)  # even the right key must wait
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Set-Cookie" not in throttled.headers
    clock.advance(FAILED_SIGN_IN_WINDOW_MS / 1000)
    await console.sign_in()


async def test_sign_in_from_another_origin_is_refused(console: Console) -> None:
    response = await console.sign_in(origin="https://evil.example", expect=403)
    assert "Set-Cookie" not in response.headers


async def test_every_action_needs_the_csrf_token_and_our_origin(
        console: Console, make_viewer: AppFactory, settings: Settings) -> None:
    viewer = await make_viewer()
    qr = await viewer.generate_qris()
    await viewer.pay(qr["trxId"], amount=999)  # a wrong amount: needs a person
    await signed_in(console)
    page = await console.get("/admin/payments")
    entry_id = re.search(r'data-entry="(\d+)"', page).group(1)  # type: ignore[union-attr]
    settle = f"/admin/payments/{entry_id}/settle"
    note = {"note": "refunded by transfer"}
    await console.post(settle, {**note, "csrf": "forged"}, expect=403)
    await console.post(settle, note, csrf=False, expect=403)
    await console.post(settle, note, headers={"Origin": "https://evil.example"}, expect=403)
    await console.post(settle, note, headers={}, expect=403)  # neither Origin nor Referer
    # A token from another sign-in is no good either.
    other = Console(await make_viewer())
    await signed_in(other)
    await console.post(settle, {**note, "csrf": other.csrf}, expect=403)
    await console.post("/admin/sign-out", {}, headers={"Origin": "https://evil.example"},
                       expect=403)
    assert "perlu ditangani" in await console.get("/admin/payments")
    # The real form, from our own page, works; Referer alone will do.
    await console.post(settle, note, headers={"Referer": console.origin + "/admin/payments"})
    page = await console.get("/admin/payments")
    assert "refunded by transfer" in page and "oleh Sari" in page


async def test_an_action_without_a_sign_in_is_refused(console: Console) -> None:
    await console.post("/admin/payments/1/settle", {"note": "x"}, expect=401)


async def test_the_ledger_lists_what_needs_a_person_first_and_settling_pays_nothing(
        console: Console, make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    good = await paid(viewer, "demo")
    short = await viewer.generate_qris("konser-malam")
    await viewer.pay(short["trxId"], amount=20000)
    await signed_in(console)
    page = await console.get("/admin/payments")
    attention = page.split('id="attention"')[1].split("</section>")[0]
    assert short["trxId"] in attention and good["trxId"] not in attention
    assert "amount_mismatch" in attention and "Rp 20.000" in attention
    entry_id = re.search(r'data-entry="(\d+)"', attention).group(1)  # type: ignore[union-attr]
    await console.post(f"/admin/payments/{entry_id}/settle", {"note": "refunded"})
    page = await console.get("/admin/payments", done="settled")
    assert "Dicatat sebagai selesai" in page
    assert short["trxId"] not in page.split('id="attention"')[1].split("</section>")[0]
    # Settling is bookkeeping: the short payment still gives no access.
    assert (await viewer.status(short["sessionId"]))["status"] == "pending"
    assert not (await viewer.check_access("konser-malam"))["hasAccess"]
    # Settling twice, or settling a payment that needs nobody, is refused.
    await console.post(f"/admin/payments/{entry_id}/settle", {"note": "again"}, expect=400)


async def test_the_ledger_filters_and_pages(console: Console, make_viewer: AppFactory,
                                            clock: FakeClock) -> None:
    viewer = await make_viewer()
    demo = await paid(viewer, "demo")
    concert = await paid(viewer, "konser-malam")
    await signed_in(console)
    table = (await console.get("/admin/payments", stream="demo")).split('id="ledger"')[1]
    assert demo["trxId"] in table and concert["trxId"] not in table
    table = (await console.get("/admin/payments", status="refused")).split("Semua notifikasi")[1]
    assert "Tidak ada notifikasi yang cocok" in table
    table = (await console.get("/admin/payments", reason="paid")).split('id="ledger"')[1]
    assert demo["trxId"] in table and concert["trxId"] in table
    # Dates are local (WIB) days; START_MS is 2027-01-15 15:00 WIB.
    assert concert["trxId"] in await console.get("/admin/payments", **{"from": "2027-01-15",
                                                                        "to": "2027-01-15"})
    assert "Tidak ada notifikasi yang cocok" in await console.get(
        "/admin/payments", **{"from": "2027-01-16"})
    await console.get("/admin/payments", status="nonsense", expect=400)
    await console.get("/admin/payments", stream="no-such-stream", expect=400)
    await console.get("/admin/payments", **{"from": "2027-13-01"}, expect=400)


async def test_the_ledger_exports_as_csv(console: Console, make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    good = await paid(viewer, "demo")
    short = await viewer.generate_qris("konser-malam")
    await viewer.pay(short["trxId"], amount=20000)
    await signed_in(console)
    response = await console.http.get("/admin/payments.csv")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(row["trx_id"], row["amount"], row["fee"], row["reason"], row["status"])
            for row in rows] == [
        (short["trxId"], "20000", "0", "amount_mismatch", "attention"),
        (good["trxId"], "1000", "0", "paid", "applied")]
    only_demo = await (await console.http.get("/admin/payments.csv?stream=demo")).text()
    assert good["trxId"] in only_demo and short["trxId"] not in only_demo


async def test_sessions_are_found_by_trx_session_or_user_and_can_be_revoked(
        console: Console, make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    qr = await paid(viewer, "demo")
    await signed_in(console)
    by_trx = await console.get("/admin/sessions", q=qr["trxId"])
    assert qr["sessionId"] in by_trx
    user_id = re.search(r"<dd><code>(v_[^<]+)</code>", by_trx).group(1)  # type: ignore[union-attr]
    assert qr["sessionId"] in await console.get("/admin/sessions", q=qr["sessionId"])
    assert qr["sessionId"] in await console.get("/admin/sessions", q=user_id)
    assert "Tidak ada sesi yang cocok" in await console.get("/admin/sessions", q="nobody")
    assert (await viewer.check_access("demo"))["hasAccess"]
    revoke = f"/admin/sessions/{qr['sessionId']}/revoke"
    await console.post(revoke, {"note": "abuse"}, headers={"Origin": "https://evil.example"},
                       expect=403)
    assert (await viewer.check_access("demo"))["hasAccess"]
    await console.post(revoke, {"note": "abuse", "q": qr["trxId"]})
    assert not (await viewer.check_access("demo"))["hasAccess"]
    page = await console.get("/admin/sessions", q=qr["trxId"], done="revoked")
    assert "Akses sesi dihentikan" in page and "Dihentikan lebih awal" in page


async def test_the_dashboard_shows_takings_conversion_and_access_open_now(
        console: Console, make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    await paid(viewer, "demo")
    await paid(viewer, "konser-malam")
    await (await make_viewer()).generate_qris("demo")  # a QR nobody paid
    await signed_in(console)
    page = await console.get("/admin")
    assert re.search(r'id="takings-today">Rp 26\.000<', page)
    assert re.search(r'id="takings-30">Rp 26\.000<', page)
    assert "2 tiket dari 3 QR (66.7%)" in page
    row = page.split('data-stream="demo"')[1].split("</tr>")[0]
    assert re.search(r'class="num paid-now"[^>]*>1</td>', row) and "1 / 2" in row
    assert "Aktif" in row  # the demo's looped origin is up
    chart = json.loads(page.split('id="sales-data">')[1].split("</script>")[0])
    assert chart["bucket"] == "day" and len(chart["x"]) == 7
    assert [sum(series["tickets"]) for series in chart["series"]] == [1, 1]
    hourly = await console.get("/admin", days="1", bucket="hour")
    chart = json.loads(hourly.split('id="sales-data">')[1].split("</script>")[0])
    assert chart["bucket"] == "hour" and 1 <= len(chart["x"]) <= 24
    await console.get("/admin", days="5", expect=400)
    longer = await console.get("/admin", days="90", bucket="hour")  # too many hours: days
    chart = json.loads(longer.split('id="sales-data">')[1].split("</script>")[0])
    assert chart["bucket"] == "day" and len(chart["x"]) == 90
    # A range of one's own: local dates, both included.
    custom = await console.get("/admin", **{"from": "2027-01-10", "to": "2027-01-15"})
    chart = json.loads(custom.split('id="sales-data">')[1].split("</script>")[0])
    assert len(chart["x"]) == 6
    assert [sum(series["takings"]) for series in chart["series"]] == [1000, 25000]
    before = await console.get("/admin", **{"from": "2027-01-01", "to": "2027-01-14"})
    chart = json.loads(before.split('id="sales-data">')[1].split("</script>")[0])
    assert len(chart["x"]) == 14 and sum(chart["series"][0]["tickets"]) == 0
    assert re.search(r'id="takings-today">Rp 26\.000<', before)  # takings stay current
    await console.get("/admin", **{"from": "2027-01-15", "to": "2027-01-10"}, expect=400)
    await console.get("/admin", **{"from": "2026-01-01", "to": "2027-01-15"}, expect=400)


async def test_english_by_accept_language(console: Console) -> None:
    response = await console.http.get("/admin/sign-in", headers={"Accept-Language": "en"})
    assert "Sign in to the operator" in await response.text()


async def test_sign_out_ends_the_sign_in(console: Console) -> None:
    await signed_in(console)
    await console.post("/admin/sign-out", {})
    await console.get("/admin", expect=303)


def _cookie(console: Console) -> str:
    return next(c.value for c in console.http.session.cookie_jar if c.key == "operator")


async def test_sign_out_ends_every_copy_of_the_sign_in(console: Console,
                                                       make_viewer: AppFactory) -> None:
    """A copy of the cookie (another tab, a stolen one) no longer opens anything once
    its sign-in was signed out: the browser's cookie is not the only thing cleared."""
    await signed_in(console)
    copy = Console(await make_viewer())
    copy.http.session.cookie_jar.update_cookies({"operator": _cookie(console)})
    await copy.get("/admin")  # the copy works, for now
    await console.post("/admin/sign-out", {})
    await copy.get("/admin", expect=303)
    await copy.get("/admin/payments", expect=303)
    await copy.post("/admin/payments/1/settle", {"note": "x"}, expect=401)


async def test_a_sign_out_ends_the_sign_in_on_every_instance(
        tmp_path: Path, aiohttp_client: Any, redis_prefix: str, clock: FakeClock) -> None:
    from tests.conftest import REDIS_URL

    consoles = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, GATEWAY_STORE=REDIS_URL,
                                 GATEWAY_REDIS_KEY_PREFIX=redis_prefix)
        consoles.append(Console(ViewerClient(await aiohttp_client(create_app(settings,
                                                                              clock=clock)))))
    here, there = consoles
    await signed_in(here)
    there.http.session.cookie_jar.update_cookies({"operator": _cookie(here)})
    await there.get("/admin")
    await here.post("/admin/sign-out", {})
    await there.get("/admin", expect=303)


async def test_the_guard_covers_every_page_and_action_of_the_console(
        console: Console) -> None:
    """The console is a sub-application whose one middleware guards all of it: a page
    or action added later is covered without anyone remembering to."""
    app = console.http.app
    assert app is not None
    [sub_app] = [resource._app for resource in app.router.resources()  # type: ignore[attr-defined]
                 if getattr(resource, "_app", None) is not None]
    checked = 0
    for resource in sub_app.router.resources():
        name = resource.name or ""
        path = re.sub(r"\{[^}:]+(:[^}]*)?\}", "1", resource.canonical).replace(
            "1.iife", "uPlot.iife")
        for route in resource:
            if name in ("admin-signin", "admin-signin-post", "uplot") or route.method == "HEAD":
                continue
            checked += 1
            if route.method == "GET":
                await console.get(path, expect=303)  # to the sign-in form
            else:
                await console.post(path, {}, headers={}, expect=403)  # no origin
                await console.post(path, {}, expect=401)  # no sign-in
    assert checked >= 8
    await signed_in(console)
    for path in ("/admin/payments/1/settle", "/admin/sessions/AAAAAAAAAAAAAAAAAAAAAA/revoke",
                 "/admin/sign-out"):
        await console.post(path, {}, csrf=False, expect=403)  # no CSRF token


async def test_no_console_without_an_operator_key(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = dataclasses.replace(make_settings(tmp_path), api_key=None)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/admin", allow_redirects=False)).status == 404
    assert (await client.get("/admin/sign-in")).status == 404


async def test_every_action_is_logged_with_who_and_what(
        console: Console, make_viewer: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    viewer = await make_viewer()
    short = await viewer.generate_qris("konser-malam")
    await viewer.pay(short["trxId"], amount=20000)
    sold = await paid(viewer, "demo")
    caplog.set_level("INFO", logger="gateway.admin")
    await signed_in(console)
    page = await console.get("/admin/payments")
    entry_id = re.search(r'data-entry="(\d+)"', page).group(1)  # type: ignore[union-attr]
    await console.post(f"/admin/payments/{entry_id}/settle", {"note": "refunded"})
    await console.post(f"/admin/sessions/{sold['sessionId']}/revoke", {"note": "abuse"})
    await console.post(f"/admin/sessions/{sold['sessionId']}/revoke", {"note": "x"},
                       headers={"Origin": "https://evil.example"}, expect=403)
    await console.http.get("/admin/payments.csv?stream=demo")
    await console.post("/admin/sign-out", {})
    logged = [(record.getMessage(), record.event_fields)  # type: ignore[attr-defined]
              for record in caplog.records if record.name == "gateway.admin"]
    actions = [(fields["operator"], fields["action"]) for message, fields in logged
               if message == "operator_action"]
    assert actions == [("Sari", "sign_in"), ("Sari", "settle"), ("Sari", "revoke"),
                       ("Sari", "export_csv"), ("Sari", "sign_out")]
    settle = next(f for m, f in logged if m == "operator_action" and f["action"] == "settle")
    assert settle["trxId"] == short["trxId"] and settle["note"] == "refunded"
    assert settle["reason"] == "amount_mismatch" and settle["address"]
    revoke = next(f for m, f in logged if m == "operator_action" and f["action"] == "revoke")
    assert revoke["sessionId"] == sold["sessionId"] and revoke["note"] == "abuse"
    refused = [f for m, f in logged if m == "operator_action_refused"]
    assert [(f["operator"], f["action"], f["why"]) for f in refused] == [
        ("Sari", "revoke", "origin")]
    assert all(API_KEY not in str(fields) for _, fields in logged)


async def test_behind_https_the_cookie_is_secure_and_the_origin_is_the_public_one(
        make_viewer: AppFactory, settings: Settings) -> None:
    public = "https://tonton.example"
    console = Console(await make_viewer(dataclasses.replace(settings, public_url=public)))
    await console.sign_in(expect=403)  # the request's own origin is not the public one
    console.origin = public
    signed = await console.sign_in()
    assert "; Secure" in signed.headers["Set-Cookie"]


async def test_the_ledger_pages_back_fifty_at_a_time(console: Console,
                                                     make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    qr = await paid(viewer, "demo")
    for _ in range(54):  # the provider tells us again and again: each one is kept
        await viewer.pay(qr["trxId"])
    await signed_in(console)
    first = await console.get("/admin/payments", stream="demo")
    assert first.count("<tr data-entry=") == 50
    older = re.search(r'href="(/admin/payments\?[^"]*before=[^"]+)" rel="next"', first)
    assert older is not None
    second = await console.get(older.group(1).replace("&amp;", "&"))
    assert second.count("<tr data-entry=") == 5 and 'rel="next"' not in second
    assert 'id="attention"' not in second  # the list of what needs a person is on page 1
    first_ids = set(re.findall(r'<tr data-entry="(\d+)"', first))
    second_ids = set(re.findall(r'<tr data-entry="(\d+)"', second))
    assert not first_ids & second_ids and len(first_ids | second_ids) == 55
    assert second.count('<td title="paid"') == 1  # the very first: the one that paid


async def test_behind_a_trusted_proxy_each_operator_has_their_own_throttle(
        make_viewer: AppFactory, settings: Settings, tmp_path: Path) -> None:
    proxied = make_settings(tmp_path, GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    console = Console(await make_viewer(dataclasses.replace(
        settings, trusted_proxies=proxied.trusted_proxies)))

    async def sign_in(key: str, address: str) -> int:
        response = await console.http.post(
            "/admin/sign-in", data={"name": "Sari", "key": key}, allow_redirects=False,
            headers={"Origin": console.origin, "X-Forwarded-For": address})
        return response.status

    for _ in range(MAX_FAILED_SIGN_INS):
        assert await sign_in("wrong-key-wrong-key-wrong", "203.0.113.7") == 401
    assert await sign_in(API_KEY, "203.0.113.7") == 429
    assert await sign_in(API_KEY, "198.51.100.20") == 303  # another operator, elsewhere


async def test_devices_are_shown_playing_and_one_can_be_ended(
        console: Console, make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    qr = await paid(viewer, "demo")
    access = await viewer.check_access("demo")  # this browser's grant
    await signed_in(console)
    page = await console.get("/admin/sessions", q=qr["sessionId"])
    assert page.count("data-grant=") == 1 and "Peramban" in page and "tidak diputar" in page
    assert re.search(r'class="num playing"[^>]*>0</td>', await console.get("/admin"))
    playlist = await viewer.http.get(access["playbackUrl"])  # the player starts
    assert playlist.status == 200
    page = await console.get("/admin/sessions", q=qr["sessionId"])
    assert "sedang diputar" in page and "dari 127.0.0.1" in page
    dashboard = await console.get("/admin")
    row = dashboard.split('data-stream="demo"')[1].split("</tr>")[0]
    assert re.search(r'class="num playing"[^>]*>1</td>', row)
    grant_id = re.search(r'data-grant="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    end = f"/admin/sessions/{qr['sessionId']}/grants/{grant_id}/end"
    await console.post(end, {}, headers={"Origin": "https://evil.example"}, expect=403)
    assert (await viewer.http.get(access["playbackUrl"])).status == 200
    await console.post(f"/admin/sessions/{qr['sessionId']}/grants/nosuchgrant000000/end",
                       {}, expect=404)
    await console.post(end, {"q": qr["trxId"]})
    # That device stops at its next request; the purchase itself is untouched.
    assert (await viewer.http.get(access["playbackUrl"])).status == 403
    assert (await viewer.status(qr["sessionId"]))["status"] == "paid"
    page = await console.get("/admin/sessions", q=qr["trxId"], done="device_ended")
    assert "Perangkat dihentikan" in page and "dihentikan 20" in page


async def test_a_revoked_sessions_devices_are_not_listed_as_playing(
        console: Console, make_viewer: AppFactory) -> None:
    viewer = await make_viewer()
    qr = await paid(viewer, "demo")
    access = await viewer.check_access("demo")
    assert (await viewer.http.get(access["playbackUrl"])).status == 200  # playing
    await signed_in(console)
    assert "sedang diputar" in await console.get("/admin/sessions", q=qr["sessionId"])
    await console.post(f"/admin/sessions/{qr['sessionId']}/revoke", {"q": qr["sessionId"]})
    page = await console.get("/admin/sessions", q=qr["sessionId"])
    assert "sedang diputar" not in page and "dari 127.0.0.1" not in page


async def test_money_goes_back_from_the_console(console: Console, make_viewer: AppFactory,
                                                 clock: FakeClock) -> None:
    """A wrong amount refunded from the payments page, a ticket from the sessions page,
    a show cancelled from the dashboard; a manual refund closed by hand; all listed."""
    viewer = await make_viewer()
    wrong = await paid(viewer, amount=999)  # needs a person: the money is refunded
    ticket = await paid(await make_viewer())
    await signed_in(console)
    payments = await console.get("/admin/payments")
    assert f'name="trx_id" value="{wrong["trxId"]}"' in payments
    await console.post("/admin/refunds", {"trx_id": wrong["trxId"], "reason": "wrong amount"})
    await console.get("/admin/sessions", q=ticket["sessionId"])
    await console.post("/admin/refunds", {"trx_id": ticket["trxId"], "amount": "400",
                                          "reason": "half the show"})
    listing = await console.get("/admin/refunds")
    assert listing.count('data-refund="') == 2 and "half the show" in listing
    assert rupiah(999) in listing and rupiah(400) in listing
    await console.post("/admin/refunds", {"trx_id": ticket["trxId"], "reason": "x",
                                          "amount": "601"}, expect=400)  # 600 remain
    dashboard = await console.get("/admin")
    assert "Batalkan acara" in dashboard
    await console.post("/admin/streams/demo/cancel", {"reason": "hujan badai"})
    assert "dibatalkan" in await console.get("/admin")
    assert "hujan badai" in await console.get("/admin/refunds")


async def test_a_manual_refund_is_closed_by_hand(tmp_path: Path, aiohttp_client: Any,
                                                 clock: FakeClock) -> None:
    from gateway.keys import REFUNDS
    from gateway.providers.simulator import SimulatorProvider

    settings = make_settings(tmp_path)
    app = create_app(settings, clock=clock)
    # A provider with no refund API: every refund is a person's task.
    app[PROVIDER].refunds_by_api = False  # type: ignore[misc]
    viewer = ViewerClient(await aiohttp_client(app))
    qr = await paid(viewer)
    console = Console(viewer)
    await signed_in(console)
    await console.post("/admin/refunds", {"trx_id": qr["trxId"], "reason": "no API"})
    page = await console.get("/admin/refunds")
    refund_id = re.search(r'<li data-refund="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    await console.post(f"/admin/refunds/{refund_id}/close", {"note": "BCA transfer 12:30"})
    [refund] = await app[REFUNDS].listing(None, None, 10)
    assert (refund.status.value, refund.by_hand) == ("succeeded", True)
    assert "Sari: BCA transfer 12:30" in refund.note
    assert isinstance(app[PROVIDER], SimulatorProvider)
