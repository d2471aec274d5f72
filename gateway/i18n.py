"""People-facing text in Indonesian (default) and English, chosen by Accept-Language.

All strings live in `locales/<lang>.toml`; code refers to them by key only.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
_LOCALE_DIR = Path(__file__).parent / "locales"


@cache
def catalog(language: str) -> Mapping[str, Any]:
    with (_LOCALE_DIR / f"{language}.toml").open("rb") as fh:
        return tomllib.load(fh)


def choose_language(accept_language: str | None) -> str:
    """The supported language the client prefers most (RFC 9110 q-values), else `id`."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        # Earlier entries win ties, as browsers list preferences in order.
        q -= position * 1e-6
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


# Parameters of error messages that are money, shown the Indonesian way.
_MONEY_PARAMS = frozenset({"price", "amount"})
# Events are announced in Western Indonesia Time, the zone of Jakarta and most viewers.
WIB = timezone(timedelta(hours=7), "WIB")


def rupiah(amount: int) -> str:
    """Rupiah the Indonesian way, in either language: `Rp 25.000`."""
    return "Rp " + f"{amount:,}".replace(",", ".")


def error_message(language: str, code: str, params: Mapping[str, Any]) -> str:
    texts = catalog(language)["errors"]
    # A refused field is named; what the parser said about it stays in the logs.
    key = f"{code}_field" if "field" in params and f"{code}_field" in texts else code
    template = texts.get(key) or texts["error"]
    shown = {name: rupiah(value) if name in _MONEY_PARAMS and isinstance(value, int)
             else value for name, value in params.items()}
    try:
        return str(template.format(**shown))
    except (KeyError, IndexError):
        return str(template)


def date_time_text(at_ms: int, language: str) -> str:
    """`Sen, 1 Des 2026 19.00 WIB` / `Mon, 1 Dec 2026 19:00 WIB`."""
    page = catalog(language)["page"]
    at = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(WIB)
    separator = "." if language == "id" else ":"
    return (f"{page['weekdays'][at.weekday()]}, {at.day} {page['months'][at.month - 1]}"
            f" {at.year} {at.hour:02d}{separator}{at.minute:02d} WIB")


def duration_text(seconds: int, language: str) -> str:
    """`2 jam`, `90 menit`, `8 detik`: the largest unit that is exact."""
    if seconds % 3600 == 0:
        return unit_text(language, "hour", seconds // 3600)
    if seconds % 60 == 0:
        return unit_text(language, "minute", seconds // 60)
    return unit_text(language, "second", seconds)


def unit_text(language: str, unit: str, n: int) -> str:
    """`1 hour`, `2 hours`; Indonesian has one form for both."""
    key = f"unit_{unit}" if n == 1 else f"unit_{unit}s"
    return str(catalog(language)["page"][key].format(n=n))


def time_until_text(ms: int, language: str) -> str:
    """Roughly how long until something: `2 hari 3 jam`, `1 jam 5 menit`, `4 menit`."""
    minutes = max(1, -(-ms // 60000))
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = []
    if days:
        parts.append(unit_text(language, "day", days))
    if hours:
        parts.append(unit_text(language, "hour", hours))
    if minutes and not days:
        parts.append(unit_text(language, "minute", minutes))
    return " ".join(parts)
