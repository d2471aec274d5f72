"""People-facing text in Indonesian (default) and English, chosen by Accept-Language.

All strings live in `locales/<lang>.toml`; code refers to them by key only.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
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


def error_message(language: str, code: str, params: Mapping[str, Any]) -> str:
    template = catalog(language)["errors"].get(code) or catalog(language)["errors"]["error"]
    try:
        return str(template.format(**params))
    except (KeyError, IndexError):
        return str(template)
