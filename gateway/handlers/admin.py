"""The operator's console, a sub-application at /admin: sales, payments to settle,
sessions to end.

Safe by construction, in one place (`console_guard`, the console's own middleware):
- every page needs a live sign-in (else the sign-in form): the operator's key
  (GATEWAY_API_KEY) and a name; a signed, HttpOnly, SameSite=Strict cookie scoped to
  /admin lasts a working day, unless signed out: then every copy of it is refused, on
  every instance (the store keeps ended sign-ins). Failed attempts are throttled per
  address;
- every action is a POST that must come from our own origin (Origin, else Referer) and
  carry this sign-in's CSRF token, checked before a stranger's body is even read, and
  is logged with who did what;
- nothing here can mark a payment paid: money only comes from providers. Settling a
  ledger entry records that a person dealt with it; revoking ends access.
The handlers only read what the guard established (`signed_in`, `console_action`).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import CsrfRefused, GrantNotFound, InvalidRequest, SignInRequired
from gateway.handlers.common import (
    read_form,
)
from gateway.i18n import catalog, choose_language
from gateway.ids import SESSION_ID, TRX_ID, USER_ID
from gateway.keys import (
    CATALOG,
    CLOCK,
    CONSOLE_SIGN_INS,
    DEVICES,
    GATE,
    OPERATOR_AUTH,
    REFUNDS,
    REPORTS,
    SESSIONS,
    SETTINGS,
    SIGN_IN_THROTTLE,
    STREAM_HEALTH,
)
from gateway.ledger import (
    CSV_HEADER,
    DAY_MS,
    HOUR_MS,
    LOCAL_OFFSET_MS,
    LedgerQuery,
    LedgerStatus,
    Settlement,
    conversion_by_stream,
    csv_row,
    local_day_start,
    sales_series,
    takings,
)
from gateway.logs import log_event
from gateway.model import NotificationReason, PaymentSession, SessionStatus
from gateway.operators import OPERATOR_NAME, SIGN_IN_SECONDS, Operator
from gateway.refund_model import RefundStatus
from gateway.web_requests import client_address, cookie_secure

log = logging.getLogger("gateway.admin")

OPERATOR_COOKIE = "operator"
COOKIE_PATH = "/admin"
LEDGER_PAGE_SIZE = 50
ATTENTION_LIMIT = 100
SESSIONS_LIMIT = 50
MAX_NOTE_CHARS = 500
RANGE_DAYS = (1, 7, 30, 90)
MAX_RANGE_DAYS = 92
MAX_HOURLY_DAYS = 31
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURSOR = re.compile(r"(\d{1,15})-(\d{1,15})")
_REASON = re.compile(r"[a-z_]{1,64}")
_NO_STORE = {"Cache-Control": "private, no-store", "X-Frame-Options": "DENY"}
# Routes anyone may reach: the sign-in form and its POST (the key is the proof there),
# and the chart library.
_SIGN_IN_FORM, _SIGN_IN = "admin-signin", "admin-signin-post"
_OPEN_ROUTES = frozenset({_SIGN_IN_FORM, _SIGN_IN, "uplot"})


@dataclass(frozen=True, slots=True)
class ConsoleAction:
    """An action the guard let through: who, and the form's text fields."""

    operator: Operator
    form: dict[str, str]


_OPERATOR = web.RequestKey("console_operator", Operator)
_ACTION = web.RequestKey("console_action", ConsoleAction)


# --- the guard -----------------------------------------------------------------------

@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in, origin and CSRF for every console page and action (see the module)."""
    route = request.match_info.route.name or ""
    operator = await request.config_dict[CONSOLE_SIGN_INS].operator(
        request.cookies.get(OPERATOR_COOKIE))
    if request.method == "POST":
        action = route.removeprefix("admin-")
        # Refused before its body is read: a stranger's request costs no wait at all.
        if not _same_origin(request):
            _log_refused(request, action, operator, "origin")
            raise CsrfRefused()
        if route != _SIGN_IN:
            if operator is None:
                _log_refused(request, action, None, "not signed in")
                raise SignInRequired()
            form = await read_form(request)
            if not request.config_dict[OPERATOR_AUTH].csrf_valid(operator, form.get("csrf")):
                _log_refused(request, action, operator, "csrf token")
                raise CsrfRefused()
            request[_ACTION] = ConsoleAction(operator, form)
    elif operator is None and route not in _OPEN_ROUTES:
        target = request.app.router[_SIGN_IN_FORM].url_for().with_query(
            next=request.path_qs)
        raise web.HTTPSeeOther(str(target))
    if operator is not None:
        request[_OPERATOR] = operator
    return await handler(request)


def signed_in(request: web.Request) -> Operator:
    """The operator of a page the guard let through."""
    return request[_OPERATOR]


def console_action(request: web.Request) -> ConsoleAction:
    """The operator and form of an action the guard let through."""
    return request[_ACTION]


def _address(request: web.Request) -> str:
    return client_address(request) or "unknown"


def _expected_origin(request: web.Request) -> str:
    public_url = request.config_dict[SETTINGS].public_url
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}"
    # Through a trusted TLS-terminating proxy the browser's origin is https.
    scheme = "https" if cookie_secure(request) else request.scheme
    return f"{scheme}://{request.host}"


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin with every POST; an old one may send only Referer. A request
    with neither is refused: it is not a form of ours."""
    origin = request.headers.get("Origin")
    if origin is None:
        referer = urlsplit(request.headers.get("Referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    return origin is not None and origin == _expected_origin(request)


def _log_action(request: web.Request, operator: Operator | None, action: str,
                **details: Any) -> None:
    log_event(log, "operator_action", operator=operator.name if operator else None,
              address=_address(request), action=action, **details)


def _log_refused(request: web.Request, action: str, operator: Operator | None,
                 why: str) -> None:
    log_event(log, "operator_action_refused", level=logging.WARNING,
              operator=operator.name if operator else None, address=_address(request),
              action=action, why=why)


def _context(request: web.Request, operator: Operator | None, **values: Any) -> dict[str, Any]:
    language = choose_language(request.headers.get("Accept-Language"))
    strings = catalog(language)
    # The console's own routes first, for url() in its templates (see app.url_across).
    return {"app": request.app, "lang": language, "t": strings["page"], "a": strings["admin"],
            "operator": operator,
            "csrf": request.config_dict[OPERATOR_AUTH].csrf_token(operator) if operator else "",
            "done": request.query.get("done", ""), **values}


def _render(template: str, request: web.Request, context: dict[str, Any],
            status: int = 200) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(_NO_STORE)
    return response


# --- sign-in -----------------------------------------------------------------------

def _safe_next(value: str | None) -> str:
    """Only back into the console: never an open redirect."""
    if value and value.startswith("/admin") and not value.startswith("//") \
            and "\\" not in value:
        return value
    return COOKIE_PATH


async def sign_in_form(request: web.Request) -> web.Response:
    return _render("admin/sign_in.html", request, _context(
        request, None, next=_safe_next(request.query.get("next")), error=""))


async def sign_in(request: web.Request) -> web.Response:
    form = await read_form(request)
    name = str(form.get("name", "")).strip()
    key = str(form.get("key", ""))
    next_url = _safe_next(str(form.get("next", "")))
    context = _context(request, None, next=next_url, name=name)
    strings = context["a"]
    address = _address(request)
    throttle, auth = request.config_dict[SIGN_IN_THROTTLE], request.config_dict[OPERATOR_AUTH]
    wait_s = throttle.retry_after_s(address)
    if wait_s:
        _log_refused(request, "sign_in", None, "throttled")
        response = _render("admin/sign_in.html", request, {
            **context, "error": strings["sign_in_throttled"].format(minutes=-(-wait_s // 60))},
            status=429)
        response.headers["Retry-After"] = str(wait_s)
        return response
    if not OPERATOR_NAME.fullmatch(name):
        return _render("admin/sign_in.html", request,
                       {**context, "error": strings["sign_in_name_needed"]}, status=400)
    if not auth.key_matches(key):
        throttle.failed(address)
        _log_refused(request, "sign_in", None, "wrong key")
        log_event(log, "operator_sign_in_failed", level=logging.WARNING, name=name,
                  address=address)
        return _render("admin/sign_in.html", request,
                       {**context, "error": strings["sign_in_wrong_key"]}, status=401)
    throttle.succeeded(address)
    operator, cookie = auth.sign_in(name)
    _log_action(request, operator, "sign_in")
    response = web.HTTPSeeOther(next_url)
    response.headers.add(
        "Set-Cookie",
        f"{OPERATOR_COOKIE}={cookie}; Max-Age={SIGN_IN_SECONDS}; Path={COOKIE_PATH};"
        " HttpOnly; SameSite=Strict" + ("; Secure" if cookie_secure(request) else ""))
    raise response


async def sign_out(request: web.Request) -> web.Response:
    """Ends this sign-in everywhere, not only in this browser: a copy of the cookie
    (another tab, a stolen one) is refused from now on, on every instance."""
    operator = console_action(request).operator
    await request.config_dict[CONSOLE_SIGN_INS].sign_out(operator)
    _log_action(request, operator, "sign_out")
    response = web.HTTPSeeOther(str(request.app.router[_SIGN_IN_FORM].url_for()))
    response.headers.add("Set-Cookie", f"{OPERATOR_COOKIE}=; Max-Age=0; Path={COOKIE_PATH};"
                         " HttpOnly; SameSite=Strict")
    raise response


# --- dashboard ---------------------------------------------------------------------

async def dashboard(request: web.Request) -> web.Response:
    app = request.config_dict
    now_ms = app[CLOCK]()
    range_from_ms, range_to_ms, days = _chart_range(request, now_ms)
    bucket = request.query.get("bucket") or ("hour" if days == 1 else "day")
    if bucket not in ("hour", "day"):
        raise InvalidRequest(detail="bucket must be hour or day")
    if range_to_ms - range_from_ms > MAX_HOURLY_DAYS * DAY_MS:
        bucket = "day"  # thousands of hourly points say nothing on a phone's chart
    today_ms = local_day_start(now_ms)
    # One read for the chart's range and the last 30 days' takings.
    buckets = await app[REPORTS].sales(min(range_from_ms, today_ms - 29 * DAY_MS),
                                       max(range_to_ms, now_ms + HOUR_MS))
    in_range = [b for b in buckets if range_from_ms <= b.hour_ms < range_to_ms]
    stream_ids = [stream.stream_id for stream in app[CATALOG]]
    series = sales_series(in_range, stream_ids, range_from_ms, min(range_to_ms, now_ms + 1),
                          HOUR_MS if bucket == "hour" else DAY_MS)
    audience = await app[REPORTS].audience_now()
    # Watched in the background by stream_health.py: reading it costs nothing here.
    health = {stream.stream_id: app[STREAM_HEALTH].health(stream.stream_id)
              for stream in app[CATALOG]}
    conversion = conversion_by_stream(in_range)
    streams = [{
        "stream": stream, "paid_now": audience.paid.get(stream.stream_id, 0),
        "playing": audience.playing.get(stream.stream_id, 0),
        "conversion": conversion.get(stream.stream_id), "health": health[stream.stream_id],
        "cancelled": app[REFUNDS].is_cancelled(stream.stream_id),
    } for stream in app[CATALOG]]
    chart = {
        "bucket": bucket,
        # Seconds, as uPlot's time axis wants, shifted so it draws local (WIB) time.
        "x": [start // 1000 for start in series.bucket_starts_ms],
        "offsetSeconds": LOCAL_OFFSET_MS // 1000,
        "series": [{"label": stream.title, "tickets": series.tickets[stream.stream_id],
                    "takings": series.takings[stream.stream_id]} for stream in app[CATALOG]],
    }
    context = _context(request, signed_in(request), section="dashboard",
                       takings=takings(buckets, now_ms), streams=streams, days=days,
                       range_from=request.query.get("from", "") if days is None else "",
                       range_to=request.query.get("to", "") if days is None else "",
                       bucket=bucket, range_days=RANGE_DAYS, chart=chart,
                       total_qrs=sum(b.qrs_created for b in in_range),
                       total_sold=sum(b.tickets_sold for b in in_range), now_ms=now_ms,
                       **_uplot_urls(request))
    return _render("admin/dashboard.html", request, context)


def _chart_range(request: web.Request, now_ms: int) -> tuple[int, int, int | None]:
    """The chart's [from, to) in ms and its preset: the last 1, 7, 30 or 90 days (today
    included), or local dates `from` to `to` (both included, at most MAX_RANGE_DAYS)."""
    query = request.query
    if query.get("from") or query.get("to"):
        from_ms = _date_ms(query.get("from", ""), "from")
        to_ms = _date_ms(query.get("to", ""), "to") + DAY_MS
        if not from_ms < to_ms <= from_ms + MAX_RANGE_DAYS * DAY_MS:
            raise InvalidRequest(detail=f"from must be before to, {MAX_RANGE_DAYS} days at most")
        return from_ms, to_ms, None
    days = _choice(request, "days", RANGE_DAYS, 7)
    today_ms = local_day_start(now_ms)
    return today_ms - (days - 1) * DAY_MS, today_ms + DAY_MS, days


def _uplot_urls(request: web.Request) -> dict[str, str]:
    """uPlot from npm, served here (like hls.js); without it the figures still show."""
    if "uplot" not in request.app.router:
        return {"uplot_js": "", "uplot_css": ""}
    route = request.app.router["uplot"]
    return {"uplot_js": str(route.url_for(name="uPlot.iife.min.js")),
            "uplot_css": str(route.url_for(name="uPlot.min.css"))}


def _choice(request: web.Request, name: str, allowed: tuple[int, ...], default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) not in allowed:
        raise InvalidRequest(detail=f"{name} must be one of {allowed}")
    return int(raw)


# --- payments ----------------------------------------------------------------------

def _ledger_query(request: web.Request) -> LedgerQuery:
    query = request.query
    stream_id = query.get("stream") or None
    if stream_id is not None and request.config_dict[CATALOG].get(stream_id) is None:
        raise InvalidRequest(detail="stream is not in the catalog")
    reason = query.get("reason") or None
    if reason is not None and not _REASON.fullmatch(reason):
        raise InvalidRequest(detail="reason is not a reason")
    status_text = query.get("status") or None
    if status_text is not None and status_text not in {s.value for s in LedgerStatus}:
        raise InvalidRequest(detail="status is not a status")
    before = None
    if query.get("before"):
        match = _CURSOR.fullmatch(query["before"])
        if match is None:
            raise InvalidRequest(detail="before is not a cursor")
        before = (int(match.group(1)), int(match.group(2)))
    return LedgerQuery(
        stream_id=stream_id, reason=reason,
        status=LedgerStatus(status_text) if status_text else None,
        from_ms=_local_date_ms(query.get("from"), "from"),
        to_ms=None if not query.get("to") else _date_ms(query["to"], "to") + DAY_MS,
        before=before)


def _local_date_ms(text: str | None, name: str) -> int | None:
    """A local (WIB) calendar date, as the ms its day starts at."""
    if not text:
        return None
    return _date_ms(text, name)


def _date_ms(text: str, name: str) -> int:
    if not _DATE.fullmatch(text):
        raise InvalidRequest(detail=f"{name} must be a date, YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(detail=f"{name} must be a date, YYYY-MM-DD") from None
    utc_midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return int(utc_midnight.timestamp() * 1000) - LOCAL_OFFSET_MS


async def payments(request: web.Request) -> web.Response:
    query = _ledger_query(request)
    reports = request.config_dict[REPORTS]
    entries = await reports.ledger(query, LEDGER_PAGE_SIZE + 1)
    more = len(entries) > LEDGER_PAGE_SIZE
    entries = entries[:LEDGER_PAGE_SIZE]
    attention = [] if query.before else await reports.ledger(
        LedgerQuery(status=LedgerStatus.ATTENTION), ATTENTION_LIMIT)
    # What each short or duplicate payment should have been.
    prices = await reports.prices(attention)
    filters = {key: request.query[key] for key in ("stream", "status", "reason", "from", "to")
               if request.query.get(key)}
    older = None
    if more:
        cursor = entries[-1].cursor
        older = "?" + urlencode({**filters, "before": f"{cursor[0]}-{cursor[1]}"})
    context = _context(
        request, signed_in(request), section="payments", entries=entries,
        attention=attention, prices=prices, filters=filters, older=older,
        older_page=query.before is not None,
        csv_query=("?" + urlencode(filters)) if filters else "",
        streams=[*request.config_dict[CATALOG]], statuses=[s.value for s in LedgerStatus],
        reasons=[r.value for r in NotificationReason if r != NotificationReason.REPLAYED])
    return _render("admin/payments.html", request, context)


async def payments_csv(request: web.Request) -> web.StreamResponse:
    """The ledger for accounting, every matching entry, streamed page by page."""
    query = _ledger_query(request)
    operator = signed_in(request)
    _log_action(request, operator, "export_csv",
                filters={k: v for k, v in request.query.items() if v})
    stamp = datetime.fromtimestamp(request.config_dict[CLOCK]() / 1000, UTC).strftime("%Y%m%d-%H%M")
    # Sent as it is read, so the middleware cannot add what every answer carries.
    response = web.StreamResponse(headers={
        **_NO_STORE, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="ledger-{stamp}.csv"'})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    reports = request.config_dict[REPORTS]
    while True:
        page_entries = await reports.ledger(query, 1000)
        for entry in page_entries:
            writer.writerow(csv_row(entry))
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
        if len(page_entries) < 1000:
            break
        query = LedgerQuery(query.stream_id, query.reason, query.status, query.from_ms,
                            query.to_ms, before=page_entries[-1].cursor)
    await response.write_eof()
    return response


async def settle(request: web.Request) -> web.Response:
    action = console_action(request)
    operator, form = action.operator, action.form
    entry_id = _int_path(request, "entry_id")
    note = form.get("note", "").strip()
    if not note or len(note) > MAX_NOTE_CHARS:
        raise InvalidRequest(detail=f"note: 1 to {MAX_NOTE_CHARS} characters")
    settled = await request.config_dict[REPORTS].settle(
        entry_id, Settlement(request.config_dict[CLOCK](), operator.name, note))
    if settled is None:
        raise InvalidRequest(detail="this entry needs no settling, or is settled already")
    _log_action(request, operator, "settle", entryId=entry_id,
                trxId=settled.notification.trx_id, reason=settled.reason,
                amount=settled.notification.amount, note=note)
    raise web.HTTPSeeOther(str(request.app.router["admin-payments"].url_for().with_query(
        done="settled")))


def _int_path(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not value.isdigit() or len(value) > 15:
        raise InvalidRequest(detail=f"{name} is not a number")
    return int(value)


# --- sessions ----------------------------------------------------------------------

async def sessions(request: web.Request) -> web.Response:
    search = request.query.get("q", "").strip()
    found = await _find_sessions(request, search) if search else []
    now_ms = request.config_dict[CLOCK]()
    gate = request.config_dict[GATE]
    devices = request.config_dict[DEVICES]
    rows = [{
        "session": session, "status": session.status_at(now_ms).value,
        # A session whose access ended plays nowhere, whatever its places last said.
        "grants": [replace(report, places=()) if session.status_at(now_ms)
                   != SessionStatus.PAID else report
                   for report in await devices.grants(session.session_id)],
        "remaining_ms": session.remaining_ms(now_ms),
        "stream": request.config_dict[CATALOG].get(session.stream_id),
        "ended_early": gate.is_ended(session.session_id),
        "can_revoke": session.status_at(now_ms) == SessionStatus.PAID,
    } for session in found]
    return _render("admin/sessions.html", request, _context(
        request, signed_in(request), section="sessions", search=search, rows=rows,
        now_ms=now_ms))


async def _find_sessions(request: web.Request, search: str) -> list[PaymentSession]:
    """One box for a trxId, a sessionId or a userId: whatever the text could be."""
    reports = request.config_dict[REPORTS]
    found: dict[str, PaymentSession] = {}
    if SESSION_ID.fullmatch(search):
        session = await reports.session(search)
        if session is not None:
            found[session.session_id] = session
    if TRX_ID.fullmatch(search):
        session = await reports.session_by_trx(search)
        if session is not None:
            found[session.session_id] = session
    if USER_ID.fullmatch(search):
        for session in await reports.sessions_of_user(search, SESSIONS_LIMIT):
            found[session.session_id] = session
    return sorted(found.values(), key=lambda s: (s.created_at_ms, s.session_id), reverse=True)


async def revoke(request: web.Request) -> web.Response:
    action = console_action(request)
    operator, form = action.operator, action.form
    session_id = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidRequest(detail="session_id is not a valid id")
    note = form.get("note", "").strip()[:MAX_NOTE_CHARS]
    session = await request.config_dict[SESSIONS].revoke(
        session_id, reason=f"operator {operator.name}")
    _log_action(request, operator, "revoke", sessionId=session_id, trxId=session.trx_id,
                streamId=session.stream_id, note=note)
    back = form.get("q") or session_id
    raise web.HTTPSeeOther(str(request.app.router["admin-sessions"].url_for().with_query(
        q=back, done="revoked")))


async def end_device(request: web.Request) -> web.Response:
    """End one device's grant: its next playlist or segment request is refused, the
    purchase and its other devices play on."""
    action = console_action(request)
    operator, form = action.operator, action.form
    session_id = request.match_info["session_id"]
    grant_id = request.match_info["grant_id"]
    if not SESSION_ID.fullmatch(session_id) or not SESSION_ID.fullmatch(grant_id):
        raise InvalidRequest(detail="not a valid id")
    devices = request.config_dict[DEVICES]
    grant = await devices.get_grant(grant_id)
    if grant is None or grant.session_id != session_id:
        raise GrantNotFound()
    note = form.get("note", "").strip()[:MAX_NOTE_CHARS]
    await devices.end_grant(grant_id, reason=f"operator {operator.name}")
    _log_action(request, operator, "end_device", sessionId=session_id, grantId=grant_id,
                deviceId=grant.device_id, note=note)
    raise web.HTTPSeeOther(str(request.app.router["admin-sessions"].url_for().with_query(
        q=form.get("q") or session_id, done="device_ended")))


# --- money back ----------------------------------------------------------------------

REFUNDS_LIMIT = 100


async def refunds(request: web.Request) -> web.Response:
    """What needs a person first (manual refunds, failed ones), then every refund."""
    service = request.config_dict[REFUNDS]
    listed = await service.listing(None, None, REFUNDS_LIMIT)
    for_person = (await service.listing(RefundStatus.MANUAL, None, REFUNDS_LIMIT)
                  + await service.listing(RefundStatus.FAILED, None, REFUNDS_LIMIT))
    return _render("admin/refunds.html", request, _context(
        request, signed_in(request), section="refunds", refunds=listed,
        for_person=sorted(for_person, key=lambda r: r.requested_at_ms)))


async def refund(request: web.Request) -> web.Response:
    """Give (part of) a payment back: a duplicate payment, a wrong amount, any ticket."""
    action = console_action(request)
    operator, form = action.operator, action.form
    trx_id = form.get("trx_id", "")
    if not TRX_ID.fullmatch(trx_id):
        raise InvalidRequest(detail="trx_id is not a transaction id", field="trx_id")
    amount_text = form.get("amount", "").strip().replace(".", "")
    if amount_text and (not amount_text.isdigit() or len(amount_text) > 12
                        or int(amount_text) < 1):
        raise InvalidRequest(detail="amount: whole rupiah", field="amount")
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > MAX_NOTE_CHARS:
        raise InvalidRequest(detail=f"reason: 1 to {MAX_NOTE_CHARS} characters")
    made = await request.config_dict[REFUNDS].request(
        trx_id, int(amount_text) if amount_text else None, reason, operator.name)
    _log_action(request, operator, "refund", trxId=trx_id, refundId=made.refund_id,
                amount=made.amount, status=made.status, reason=reason)
    raise web.HTTPSeeOther(str(request.app.router["admin-refunds"].url_for().with_query(
        done="refund_" + made.status.value)))


async def close_refund(request: web.Request) -> web.Response:
    """A person gave a manual (or failed) refund's money back by hand."""
    action = console_action(request)
    operator, form = action.operator, action.form
    note = form.get("note", "").strip()
    if not note or len(note) > MAX_NOTE_CHARS:
        raise InvalidRequest(detail=f"note: 1 to {MAX_NOTE_CHARS} characters")
    closed = await request.config_dict[REFUNDS].close_by_hand(
        request.match_info["refund_id"], operator.name, note)
    _log_action(request, operator, "refund_by_hand", refundId=closed.refund_id,
                trxId=closed.trx_id, amount=closed.amount, note=note)
    raise web.HTTPSeeOther(str(request.app.router["admin-refunds"].url_for().with_query(
        done="refund_closed")))


async def cancel_show(request: web.Request) -> web.Response:
    action = console_action(request)
    operator, form = action.operator, action.form
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 255:
        raise InvalidRequest(detail="reason: 1 to 255 characters")
    stream_id = request.match_info["stream_id"]
    _, made = await request.config_dict[REFUNDS].cancel_show(
        stream_id, reason, operator.name)
    _log_action(request, operator, "cancel_show", streamId=stream_id, reason=reason,
                refunds=made)
    raise web.HTTPSeeOther(str(request.app.router["admin-refunds"].url_for().with_query(
        done="show_cancelled")))
