"""A crowd at the start of a show (issue 26): seeded arrivals of buyers over a minute,
most in its first third, against `gateway serve` with GATEWAY_WORKERS on Redis and a
local Xendit that enforces 600 creates a minute (429 beyond, sliding window, as
Xendit's live mode). Each buyer opens the watch page, asks for a QR (201, or 202 and a
place in line, then the QR over the WebSocket), pays after a random 5-40 s (the fake
Xendit sends its signed callback, confirmed by its status API) and plays (check-access,
then the playlist through the gate).

    .venv/bin/python -m bench.crowd [--buyers 10000] [--seconds 60] [--workers 2]
                                    [--flood 0] [--redis redis://127.0.0.1:6379/14]
    .venv/bin/python -m bench.crowd --gate [seconds]   # the gate's req/s, 1 and 2 workers

`--flood N`: besides the buyers, one client at one address mints N identities as fast
as it can at the start; the buyers' figures then say how much it delayed them.

Prints: 5xx, buyers refused, time to QR or place (p50/p99), the queue's ETA error
(the wait the 202 announced against when the QR really came), the provider quota used
while anyone waited, paid-to-playing (p50/p99), and duplicate sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.tools import ROOT, ServerProcess, free_port

SECRET = "c" * 40
API_KEY = "bench-api-key-0123456789abcdef"
XENDIT_KEY = "xnd_production_" + "b" * 40
CALLBACK_TOKEN = "bench-xendit-callback-token-0123456789"
RATE_PER_MINUTE = 600
SEED = 26


# --- the fake Xendit, in a process of its own ------------------------------------------

def serve_fake(port: int) -> None:
    from aiohttp import web

    from gateway.clock import system_clock_ms
    from tests.providers.fake_xendit import FakeXendit

    fake = FakeXendit(XENDIT_KEY, CALLBACK_TOKEN, system_clock_ms)
    fake.rate_per_minute = RATE_PER_MINUTE
    fake.retry_after_s = 1
    app = fake.app()
    http: list[aiohttp.ClientSession] = []

    async def pay(request: web.Request) -> web.Response:
        if not http:
            http.append(aiohttp.ClientSession())
        status, _ = await fake.pay(http[0], request.match_info["qr_id"],
                                   request.query["callback"])
        return web.json_response({"status": status})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"creates": fake.create_times_ms,
                                  "refused": fake.refused_creates})

    async def close_http(app: web.Application) -> None:
        for session in http:
            await session.close()

    app.router.add_post("/bench/pay/{qr_id}", pay)
    app.router.add_get("/bench/stats", stats)
    app.on_cleanup.append(close_http)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the buyers -------------------------------------------------------------------------

@dataclass
class Figures:
    statuses: list[int] = field(default_factory=list)  # every HTTP answer
    refused: int = 0  # buyers who never got a QR, or were answered 4xx/5xx
    answer_s: list[float] = field(default_factory=list)  # time to QR or place
    eta_error: list[float] = field(default_factory=list)  # (real - announced) / announced
    eta_abs_error_s: list[float] = field(default_factory=list)
    eta_error_nat: list[float] = field(default_factory=list)  # buyers behind a NAT
    # Places said as the least wait (etaAtLeast): whether the QR came no sooner.
    at_least_held: list[bool] = field(default_factory=list)
    qr_s: list[float] = field(default_factory=list)  # asked -> QR in hand, own address
    qr_s_nat: list[float] = field(default_factory=list)  # the same, behind a NAT
    queued: int = 0
    first_queued_at: float | None = None
    last_line_qr_at: float = 0.0
    paid_to_playing_s: list[float] = field(default_factory=list)
    sessions: dict[str, set[str]] = field(default_factory=dict)  # viewer -> session ids
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def arrivals(count: int, seconds: float, rng: random.Random) -> list[float]:
    """A ramp: Beta(1, 3) over the minute, so about 70% arrive in its first 20 s."""
    return sorted(seconds * rng.betavariate(1, 3) for _ in range(count))


def addresses(count: int, rng: random.Random) -> list[str]:
    """Most buyers on their own address; a third behind five carrier NATs."""
    nats = [f"100.64.0.{n}" for n in range(1, 6)]
    return [rng.choice(nats) if rng.random() < 1 / 3
            else f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(count)]


async def buyer(http: aiohttp.ClientSession, base: str, ws_base: str, fake: str,
                start: float, arrive_s: float, address: str, pay_after_s: float,
                figures: Figures) -> None:
    await asyncio.sleep(max(0.0, start + arrive_s - time.monotonic()))
    forwarded = {"X-Forwarded-For": address}
    async with http.get(f"{base}/watch/demo", headers=forwarded) as page:
        figures.statuses.append(page.status)
        await page.read()
        viewer = page.cookies.get("viewer")
    if viewer is None:
        figures.refused += 1
        figures.errors.append(f"watch page {page.status}: no cookie")
        return
    cookie = {"Cookie": f"viewer={viewer.value}", **forwarded}
    asked = time.monotonic()
    async with http.post(f"{base}/api/generate-qris", json={"streamId": "demo"},
                         headers=cookie) as answer:
        figures.statuses.append(answer.status)
        body = await answer.json()
    answered = time.monotonic()
    figures.answer_s.append(answered - asked)
    if answer.status == 202:
        figures.queued += 1
        if figures.first_queued_at is None:
            figures.first_queued_at = answered
        eta_s = body["data"]["etaSeconds"]
        at_least = body["data"]["etaAtLeast"]
        qr = await qr_from_line(http, ws_base, cookie)
        if qr is None:
            figures.refused += 1
            figures.errors.append("no QR from the line")
            return
        came = time.monotonic()
        figures.last_line_qr_at = max(figures.last_line_qr_at, came)
        waited_s = came - answered
        if at_least:  # a floor, not an estimate: it holds if the QR came no sooner
            figures.at_least_held.append(waited_s >= eta_s - 1)
        else:
            figures.eta_abs_error_s.append(waited_s - eta_s)
        if eta_s >= 5 and not at_least:  # a relative error of a second's rounding
            (figures.eta_error_nat if address.startswith("100.64.") else
             figures.eta_error).append((waited_s - eta_s) / eta_s)
    elif answer.status in (200, 201):
        qr = body["data"]
        came = answered
    else:
        figures.refused += 1
        figures.errors.append(f"generate-qris {answer.status}: {body.get('code')}")
        return
    (figures.qr_s_nat if address.startswith("100.64.") else figures.qr_s).append(came - asked)
    figures.sessions.setdefault(viewer.value, set()).add(qr["sessionId"])
    await asyncio.sleep(pay_after_s)
    await pay_and_play(http, base, ws_base, fake, cookie, qr, figures)


async def qr_from_line(http: aiohttp.ClientSession, ws_base: str, cookie: dict[str, str]
                       ) -> dict[str, Any] | None:
    async with http.ws_connect(f"{ws_base}/ws?streamId=demo", headers=cookie,
                               heartbeat=None) as socket:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            if '"type":"qr"' in message.data:
                found: dict[str, Any] = json.loads(message.data)
                return found
    return None


async def pay_and_play(http: aiohttp.ClientSession, base: str, ws_base: str, fake: str,
                       cookie: dict[str, str], qr: dict[str, Any], figures: Figures) -> None:
    async with http.ws_connect(f"{ws_base}/ws?sessionId={qr['sessionId']}",
                               headers=cookie, heartbeat=None) as socket:
        await socket.receive(timeout=30)  # the snapshot
        paying = time.monotonic()
        async with http.post(f"{fake}/bench/pay/{qr['trxId']}",
                             params={"callback": f"{base}/api/payment-callback"}) as paid:
            await paid.read()
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                figures.errors.append("status socket closed before paid")
                return
            if '"status":"paid"' in message.data:
                break
    async with http.get(f"{base}/api/check-access",
                        params={"streamId": "demo", "sessionId": qr["sessionId"]},
                        headers=cookie) as access:
        figures.statuses.append(access.status)
        granted = (await access.json())["data"]
    if not granted.get("hasAccess"):
        figures.errors.append("paid but no access")
        return
    async with http.get(base + granted["tokenPlaybackUrl"], headers=cookie) as playlist:
        figures.statuses.append(playlist.status)
        await playlist.read()
    if playlist.status == 200:
        figures.paid_to_playing_s.append(time.monotonic() - paying)
    else:
        figures.errors.append(f"playlist {playlist.status}")


async def flooder(http: aiohttp.ClientSession, base: str, count: int,
                  figures: Figures) -> None:
    """One client, one address, a new identity per request (no cookie kept)."""
    headers = {"X-Forwarded-For": "203.0.113.66"}

    async def one() -> None:
        async with http.post(f"{base}/api/generate-qris", json={"streamId": "demo"},
                             headers=headers) as answer:
            await answer.read()
            figures.statuses.append(answer.status)

    for start in range(0, count, 200):
        await asyncio.gather(*(one() for _ in range(min(200, count - start))))


async def crowd(base: str, fake: str, buyers: int, seconds: float, flood: int
                ) -> tuple[Figures, Figures, float]:
    rng = random.Random(SEED)
    figures, flood_figures = Figures(), Figures()
    times = arrivals(buyers, seconds, rng)
    where = addresses(buyers, rng)
    pay_after = [rng.uniform(5, 40) for _ in range(buyers)]
    ws_base = base.replace("http://", "ws://")
    # No cap: every waiting buyer holds a WebSocket, and a capped pool would make the
    # others wait for a connection before they could even ask.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=None,
                                                                   sock_read=1800)) as http:
        start = time.monotonic()
        tasks = [asyncio.create_task(buyer(http, base, ws_base, fake, start, times[n],
                                           where[n], pay_after[n], figures))
                 for n in range(buyers)]
        if flood:
            tasks.append(asyncio.create_task(flooder(http, base, flood, flood_figures)))
        for done in asyncio.as_completed(tasks):
            try:
                await done
            except Exception as exc:  # a buyer that broke is counted, not hidden
                figures.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                figures.refused += 1
        return figures, flood_figures, start


def duplicates(redis_url: str, prefix: str) -> int:
    """Viewers holding more than one session for the stream (rule 1), from the store."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        per_viewer: dict[str, int] = {}
        for key in client.scan_iter(match=f"{prefix}session:*", count=1000):
            user = client.hget(key, "user_id")
            if user is not None:
                per_viewer[user] = per_viewer.get(user, 0) + 1
        return sum(1 for count in per_viewer.values() if count > 1)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--buyers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--flood", type=int, default=0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--fake", type=int, help=argparse.SUPPRESS)  # the fake's process
    parser.add_argument("--gate", type=int, nargs="?", const=10, default=0)
    args = parser.parse_args()
    if args.fake:
        serve_fake(args.fake)
        return
    if args.gate:
        gate_by_workers(args.redis, args.gate)
        return
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "bench.crowd", "--fake", str(fake_port)],
                            cwd=ROOT)
    fake_url = f"http://127.0.0.1:{fake_port}"
    prefix = f"bench-crowd-{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess({
            "GATEWAY_VAR_DIR": tmp, "GATEWAY_STORE": args.redis,
            "GATEWAY_REDIS_KEY_PREFIX": prefix, "GATEWAY_SECRET": SECRET,
            "GATEWAY_API_KEY": API_KEY, "GATEWAY_WORKERS": str(args.workers),
            "GATEWAY_WEBHOOK_SECRET": "w" * 40,
            "GATEWAY_PROVIDER": "xendit", "GATEWAY_PROVIDER_URL": fake_url,
            "GATEWAY_XENDIT_SECRET_KEY": XENDIT_KEY,
            "GATEWAY_XENDIT_CALLBACK_TOKEN": CALLBACK_TOKEN,
            "GATEWAY_PROVIDER_RATE_PER_MINUTE": str(RATE_PER_MINUTE),
            "GATEWAY_TRUSTED_PROXIES": "127.0.0.1", "GATEWAY_LOG_LEVEL": "WARNING",
        }, log_path=Path(tmp) / "gateway.log")
        try:
            try:
                server.start(timeout_s=30)
            except RuntimeError:
                sys.exit((Path(tmp) / "gateway.log").read_text()[-2000:])
            figures, flood_figures, _ = asyncio.run(
                crowd(server.url, fake_url, args.buyers, args.seconds, args.flood))
            with contextlib.closing(__import__("urllib.request").request.urlopen(
                    f"{fake_url}/bench/stats")) as answer:
                stats = json.loads(answer.read())
        finally:
            server.stop()
            fake.terminate()
            fake.wait()
        dupes = duplicates(args.redis, prefix)
        _forget(args.redis, prefix)
    report(args, figures, flood_figures, stats, dupes)


def gate_by_workers(redis_url: str, seconds: int) -> None:
    """The gate's req/s serving a paid viewer's playlist (path token), `wrk -c50`, with
    1 and then 2 workers on one Redis store, alternated over three rounds."""
    from bench.gate_vs_nginx import path_token_base
    from bench.tools import wrk

    results: dict[int, list[Any]] = {1: [], 2: []}
    for _ in range(3):
        for workers in (1, 2):
            prefix = f"bench-gate-{secrets.token_hex(4)}:"
            with tempfile.TemporaryDirectory() as tmp:
                server = ServerProcess({
                    "GATEWAY_VAR_DIR": tmp, "GATEWAY_STORE": redis_url,
                    "GATEWAY_REDIS_KEY_PREFIX": prefix, "GATEWAY_SECRET": SECRET,
                    "GATEWAY_WEBHOOK_SECRET": "w" * 40, "GATEWAY_API_KEY": API_KEY,
                    "GATEWAY_WORKERS": str(workers), "GATEWAY_LOG_LEVEL": "WARNING",
                    "GATEWAY_MAX_DEVICES": "0"}).start(timeout_s=30)
                try:
                    base = asyncio.run(path_token_base(server.url, "demo"))
                    results[workers].append(wrk(f"{base}/index.m3u8", connections=50,
                                                seconds=seconds, threads=2))
                finally:
                    server.stop()
                    _forget(redis_url, prefix)
    print(f"the gate, a paid viewer's playlist by path token, wrk -t2 -c50 -d{seconds}s, "
          "three rounds alternated (median round):")
    for workers, rounds in results.items():
        middle = sorted(rounds, key=lambda result: result.requests_per_s)[1]
        print(f"  GATEWAY_WORKERS={workers}: {middle}   rounds: "
              + ", ".join(f"{result.requests_per_s:.0f}" for result in rounds))


def _forget(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for at in range(0, len(keys), 1000):
            client.delete(*keys[at:at + 1000])
    finally:
        client.close()


def quota_lost(creates_s: list[float]) -> str:
    """Where the unused quota went: each gap between two creates beyond one interval is
    time lost, summed by the gap's size (many small slips, or a few long stalls)."""
    interval_s = 60 / RATE_PER_MINUTE
    lost_s = {"<= 10 ms": 0.0, "10-100 ms": 0.0, "100 ms-1 s": 0.0, "> 1 s": 0.0}
    for earlier, later in itertools.pairwise(creates_s):
        over_s = later - earlier - interval_s
        if over_s <= 0:
            continue
        key = ("<= 10 ms" if over_s <= 0.01 else "10-100 ms" if over_s <= 0.1
               else "100 ms-1 s" if over_s <= 1 else "> 1 s")
        lost_s[key] += over_s
    return "    quota lost to gaps beyond one interval, by the gap's excess: " + ", ".join(
        f"{name} {seconds:.1f} s" for name, seconds in lost_s.items())


def report(args: argparse.Namespace, figures: Figures, flood_figures: Figures,
           stats: dict[str, Any], dupes: int) -> None:
    statuses = figures.statuses + flood_figures.statuses
    server_errors = sum(1 for status in statuses if status >= 500)
    creates_ms = [at_ms / 1000 for at_ms in stats["creates"]]
    # Quota used while anyone waited: creates made then, against the cap over that time.
    used = "n/a (nobody waited)"
    if figures.first_queued_at is not None and figures.last_line_qr_at:
        wall_to_mono = time.time() - time.monotonic()
        since = figures.first_queued_at + wall_to_mono
        until = figures.last_line_qr_at + wall_to_mono
        made = sum(1 for at in creates_ms if since <= at <= until)
        allowed = RATE_PER_MINUTE / 60 * (until - since)
        used = f"{100 * made / allowed:.1f}% ({made} of {allowed:.0f} allowed in {until - since:.0f} s)"
        used += "\n" + quota_lost(sorted(at for at in creates_ms if since <= at <= until))
    print(f"bench/crowd.py: {args.buyers} buyers over {args.seconds:.0f} s (seed {SEED}), "
          f"GATEWAY_WORKERS={args.workers} on Redis, fake Xendit capped at "
          f"{RATE_PER_MINUTE}/min" + (f", flood of {args.flood} identities" if args.flood else ""))
    print(f"  5xx answers                      {server_errors}  (of {len(statuses)} answers)")
    print(f"  buyers refused                   {figures.refused}")
    print(f"  time to QR or place  p50 / p99   {1000 * statistics.median(figures.answer_s):.0f} ms"
          f" / {1000 * percentile(figures.answer_s, 0.99):.0f} ms")
    print(f"  queued                           {figures.queued}")
    for label, waits in (("own address", figures.qr_s), ("behind a NAT", figures.qr_s_nat)):
        if waits:
            print(f"  asked to QR in hand, {label:12s} p50 {statistics.median(waits):.1f} s"
                  f", p99 {percentile(waits, 0.99):.1f} s, max {max(waits):.1f} s")
    for label, errors in (("own address", figures.eta_error),
                          ("behind a NAT", figures.eta_error_nat),
                          ("everyone", figures.eta_error + figures.eta_error_nat)):
        if errors:
            print(f"  ETA error (estimates), {label:12s} median {100 * statistics.median(errors):+.1f}%"
                  f", p10 {100 * percentile(errors, 0.10):+.1f}%"
                  f", p90 {100 * percentile(errors, 0.90):+.1f}%"
                  f", within 20%: {100 * sum(abs(e) <= 0.2 for e in errors) / len(errors):.1f}%"
                  f" (of {len(errors)} with ETA >= 5 s)")
    if figures.eta_abs_error_s:
        print(f"  ETA error (estimates), seconds  median {statistics.median(figures.eta_abs_error_s):+.1f}"
              f", p90 {percentile(figures.eta_abs_error_s, 0.90):+.1f}")
    if figures.at_least_held:
        held = figures.at_least_held
        print(f"  ETAs said as the least wait      {len(held)}; the QR came no sooner "
              f"(1 s rounding) for {100 * sum(held) / len(held):.1f}%")
    print(f"  provider quota used while queued {used}")
    print(f"  provider 429s                    {stats['refused']}")
    if figures.paid_to_playing_s:
        print(f"  paid-to-playing  p50 / p99       {1000 * statistics.median(figures.paid_to_playing_s):.0f} ms"
              f" / {1000 * percentile(figures.paid_to_playing_s, 0.99):.0f} ms"
              f"  ({len(figures.paid_to_playing_s)} played)")
    print(f"  duplicate sessions               {dupes}")
    if flood_figures.statuses:
        flood_counts: dict[int, int] = {}
        for status in flood_figures.statuses:
            flood_counts[status] = flood_counts.get(status, 0) + 1
        print(f"  the flood's answers              {dict(sorted(flood_counts.items()))}")
    if figures.errors:
        print(f"  errors ({len(figures.errors)}), first: {figures.errors[:5]}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
