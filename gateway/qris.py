"""QRIS payloads: EMVCo merchant-presented TLV, built and checked by parsing, never by
string surgery on the raw text (the static-to-dynamic converters in the wild break on
exactly that, see ../shared/providers.md).

Format: `TT LL VALUE`, two-digit tag, two-digit decimal length in characters, value.
Tag 63 carries CRC-16/CCITT-FALSE over the whole payload up to and including `6304`.
"""

from __future__ import annotations

import binascii
import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

POINT_OF_INITIATION_STATIC = "11"
POINT_OF_INITIATION_DYNAMIC = "12"
CURRENCY_IDR = "360"
# Templates whose value is itself TLV: merchant accounts 26-51, additional data 62,
# language 64, unreserved 80-99.
TEMPLATE_TAGS = frozenset({*(f"{t:02d}" for t in range(26, 52)), "62", "64",
                           *(f"{t:02d}" for t in range(80, 100))})
ADDITIONAL_REFERENCE_LABEL = "05"
SIMULATOR_GUID = "ID.CO.PAYGATE.WWW"
QRIS_NATIONAL_GUID = "ID.CO.QRIS.WWW"
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]{1,2})?")
_MAX_LENGTH = {"59": 25, "60": 15, "61": 10, "54": 13}


@dataclass(frozen=True, slots=True)
class MerchantProfile:
    """What the simulator writes into its QRIS payloads (tags 26, 51, 52, 59-61)."""

    name: str = "STREAM PAYGATE"
    city: str = "JAKARTA"
    postal_code: str = "10110"
    mcc: str = "7832"  # motion picture theatres: the closest MCC to pay-per-view
    pan: str = "936000140000000017"
    merchant_id: str = "SIM000000000001"
    nmid: str = "ID1026000000001"
    criteria: str = "UMI"


class QrisError(ValueError):
    """A payload that is not well-formed QRIS."""


def crc16_ccitt_false(data: bytes) -> int:
    # binascii.crc_hqx is poly 0x1021, unreflected, no final xor: with init 0xFFFF that is
    # exactly CRC-16/CCITT-FALSE, in C.
    return binascii.crc_hqx(data, 0xFFFF)


def crc_field(payload_before_crc: str) -> str:
    """The 4 uppercase hex digits for tag 63, always zero-padded (the `qris.php` bug)."""
    return f"{crc16_ccitt_false(payload_before_crc.encode('utf-8')):04X}"


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def encode_tlv(fields: list[tuple[str, str]]) -> str:
    parts = []
    for tag, value in fields:
        if not re.fullmatch(r"[0-9]{2}", tag):
            raise QrisError(f"tag {tag!r} is not two digits")
        if len(value) > 99:
            raise QrisError(f"tag {tag}: value longer than 99 characters")
        parts.append(f"{tag}{len(value):02d}{value}")
    return "".join(parts)


def decode_tlv(text: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        header = text[position : position + 4]
        if len(header) < 4 or not header.isdigit() or not header.isascii():
            raise QrisError(f"bad TLV header at offset {position}: {header!r}")
        tag, length = header[:2], int(header[2:])
        value = text[position + 4 : position + 4 + length]
        if len(value) != length:
            raise QrisError(f"tag {tag} at offset {position} is truncated")
        fields.append((tag, value))
        position += 4 + length
    return fields


@dataclass(frozen=True, slots=True)
class Qris:
    """A parsed payload: top-level fields in order, templates decoded on demand."""

    payload: str
    fields: tuple[tuple[str, str], ...]

    def get(self, tag: str) -> str | None:
        for field_tag, value in self.fields:
            if field_tag == tag:
                return value
        return None

    def template(self, tag: str) -> dict[str, str]:
        value = self.get(tag)
        return dict(decode_tlv(value)) if value is not None else {}

    @property
    def is_dynamic(self) -> bool:
        return self.get("01") == POINT_OF_INITIATION_DYNAMIC

    @property
    def amount(self) -> Decimal | None:
        raw = self.get("54")
        try:
            return Decimal(raw) if raw is not None else None
        except InvalidOperation:
            return None

    @property
    def merchant_name(self) -> str | None:
        return self.get("59")

    @property
    def nmid(self) -> str | None:
        """The National Merchant ID (`ID...`) that payers' apps show beside the name: in
        the merchant account template whose GUID is the national QRIS one."""
        for tag, _ in self.fields:
            if "26" <= tag <= "51":
                template = self.template(tag)
                if template.get("00") == QRIS_NATIONAL_GUID and template.get("02"):
                    return template["02"]
        return None

    def references(self) -> set[str]:
        """Every value of the additional-data template: providers put their transaction
        id in different sub-tags (05 Xendit, 07 otomatis.vip, 50 Midtrans)."""
        return set(self.template("62").values()) if self.get("62") is not None else set()


def parse(payload: str) -> Qris:
    """Parse a payload's structure (not its business rules: see `problems`)."""
    if not isinstance(payload, str) or not payload:
        raise QrisError("empty payload")
    if payload != payload.strip():
        raise QrisError("payload has surrounding whitespace")
    return Qris(payload=payload, fields=tuple(decode_tlv(payload)))


@functools.lru_cache(maxsize=16)
def _merchant_fields(merchant: MerchantProfile) -> tuple[str, str]:
    """The TLV before and after the amount: fixed per merchant, so built once."""
    before = encode_tlv([
        ("00", "01"),
        ("01", POINT_OF_INITIATION_DYNAMIC),
        ("26", encode_tlv([("00", SIMULATOR_GUID), ("01", merchant.pan),
                           ("02", merchant.merchant_id), ("03", merchant.criteria)])),
        ("51", encode_tlv([("00", QRIS_NATIONAL_GUID), ("02", merchant.nmid),
                           ("03", merchant.criteria)])),
        ("52", merchant.mcc),
        ("53", CURRENCY_IDR),
    ])
    after = encode_tlv([
        ("58", "ID"),
        ("59", merchant.name),
        ("60", merchant.city),
        ("61", merchant.postal_code),
    ])
    return before, after


def build_dynamic(merchant: MerchantProfile, amount_rupiah: int, reference: str) -> str:
    """A dynamic (point of initiation 12) payload for one transaction."""
    if amount_rupiah <= 0:
        raise QrisError("amount must be positive")
    if not 1 <= len(reference) <= 25:
        raise QrisError("reference must be 1 to 25 characters")
    before, after = _merchant_fields(merchant)
    body = (
        before
        + encode_tlv([("54", str(amount_rupiah))])
        + after
        + encode_tlv([("62", encode_tlv([(ADDITIONAL_REFERENCE_LABEL, reference)]))])
        + "6304"
    )
    return body + crc_field(body)


def problems(payload: str) -> list[str]:
    """Everything wrong with a payload, as QRIS/EMVCo rules; empty when it is valid."""
    try:
        qris = parse(payload)
    except QrisError as exc:
        return [str(exc)]
    found: list[str] = []
    tags = [tag for tag, _ in qris.fields]
    duplicated = sorted({tag for tag in tags if tags.count(tag) > 1})
    if duplicated:
        found.append(f"duplicate tags: {', '.join(duplicated)}")
    if tags[0] != "00" or qris.get("00") != "01":
        found.append("payload format indicator 00=01 must come first")
    if tags[-1] != "63":
        found.append("CRC (tag 63) must be last")
    else:
        crc = qris.get("63") or ""
        if not re.fullmatch(r"[0-9A-F]{4}", crc):
            found.append(f"CRC {crc!r} is not 4 uppercase hex digits")
        elif crc != crc_field(payload[:-4]):
            found.append(f"CRC mismatch: payload says {crc},"
                         f" content gives {crc_field(payload[:-4])}")
    for tag in ("01", "52", "53", "58", "59", "60"):
        if qris.get(tag) is None:
            found.append(f"required tag {tag} missing")
    if qris.get("01") not in (None, POINT_OF_INITIATION_STATIC, POINT_OF_INITIATION_DYNAMIC):
        found.append("point of initiation must be 11 or 12")
    if qris.get("53") not in (None, CURRENCY_IDR):
        found.append("currency must be 360 (IDR)")
    if qris.get("58") not in (None, "ID"):
        found.append("country must be ID")
    if not any(f"{t:02d}" in tags for t in range(2, 52)):
        found.append("no merchant account information (tags 02-51)")
    for tag, limit in _MAX_LENGTH.items():
        value = qris.get(tag)
        if value is not None and len(value) > limit:
            found.append(f"tag {tag} longer than {limit} characters")
    raw_amount = qris.get("54")
    if raw_amount is not None and (not _AMOUNT.fullmatch(raw_amount) or Decimal(raw_amount) <= 0):
        found.append(f"amount {raw_amount!r} is not a positive decimal with at most 2 places")
    for tag, value in qris.fields:
        if tag in TEMPLATE_TAGS:
            try:
                decode_tlv(value)
            except QrisError as exc:
                found.append(f"template {tag}: {exc}")
    return found


def problems_for_transaction(payload: str, amount_rupiah: int,
                             reference: str | None) -> list[str]:
    """Checks a payload handed to us for one transaction before a viewer sees it."""
    found = problems(payload)
    if found:
        return found
    qris = parse(payload)
    if not qris.is_dynamic:
        found.append("not a dynamic QRIS (point of initiation 12)")
    if qris.amount != Decimal(amount_rupiah):
        found.append(f"amount {qris.get('54')!r} is not {amount_rupiah}")
    if reference is not None and reference not in qris.references():
        found.append(f"transaction reference {reference!r} not in tag 62")
    return found
