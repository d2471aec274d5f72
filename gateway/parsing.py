"""Parsing untrusted text and bytes, with no HTTP: the rules every edge shares (request
handlers, provider notifications). Anything that fails is an `InvalidRequest`."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from gateway.errors import InvalidRequest

T = TypeVar("T")

# Our bodies are flat objects; anything deeper is not for us (and thousands of levels
# would exhaust the decoder's recursion).
MAX_JSON_DEPTH = 16
# Providers' bodies nest a few levels (Xendit's data.payment_detail...); far deeper is
# no notification of theirs, and would exhaust the decoder's recursion.
PROVIDER_JSON_MAX_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_NESTING = re.compile(rb"[\[\]{}]")
# int() also takes '²' and '٣', and thousands of digits: numbers are ASCII, and short.
_DIGITS = re.compile(r"[0-9]{1,18}")


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest, brackets inside strings not counted."""
    depth = deepest = 0
    for match in _JSON_NESTING.finditer(_JSON_STRING.sub(b"", raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def too_deep(raw: bytes, max_depth: int) -> bool:
    """Whether JSON text nests deeper than `max_depth`: checked before any decoder
    (json, msgspec) recurses into it. Cheap when there are few brackets at all."""
    return raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth


def decode_json(raw: bytes, shape: type[T]) -> T:
    """UTF-8 JSON, at most MAX_JSON_DEPTH deep, decoded strictly into `shape`: wrong
    types, floats for integers, missing fields, invalid UTF-8 and malformed JSON are a
    400 naming the problem."""
    if too_deep(raw, MAX_JSON_DEPTH):
        raise InvalidRequest(detail=f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return msgspec.json.decode(raw, type=shape)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(detail=str(exc)) from None
    except UnicodeDecodeError:
        raise InvalidRequest(detail="the body is not UTF-8") from None
    except RecursionError:  # the depth check makes this unreachable: keep it so
        raise InvalidRequest(detail="JSON nested too deep") from None


def ascii_int(text: str, name: str, low: int, high: int) -> int:
    """A whole number written in ASCII digits, within [low, high]."""
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise InvalidRequest(detail=f"{name} must be a whole number from {low} to {high}")
    return int(text)


def is_ascii_int(text: str, max_digits: int = 18) -> bool:
    return len(text) <= max_digits and _DIGITS.fullmatch(text) is not None
