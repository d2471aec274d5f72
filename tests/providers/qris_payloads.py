"""QRIS payloads as the fakes' acquirers would issue them: written here, independently
of gateway/qris.py, from the EMVCo layout (TT LL VALUE, CRC-16/CCITT-FALSE last)."""

from __future__ import annotations


def _tlv(*fields: tuple[str, str]) -> str:
    return "".join(f"{tag}{len(value):02d}{value}" for tag, value in fields)


def _crc(data: bytes) -> str:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def dynamic_qris(amount: str, reference_tag: str, reference: str, *,
                 guid: str = "COM.GO-JEK.WWW", initiation: str = "12") -> str:
    """A dynamic payload for `amount` (text as the provider writes it: "1000.00" or
    "1000"), with the provider's transaction reference in tag 62.<reference_tag>."""
    body = _tlv(
        ("00", "01"),
        ("01", initiation),
        ("26", _tlv(("00", guid), ("01", "936009140000000014"), ("02", "G000000001"),
                    ("03", "UMI"))),
        ("51", _tlv(("00", "ID.CO.QRIS.WWW"), ("02", "ID1020000000001"), ("03", "UMI"))),
        ("52", "7832"),
        ("53", "360"),
        ("54", amount),
        ("58", "ID"),
        ("59", "TONTON LIVE"),
        ("60", "JAKARTA"),
        ("61", "10110"),
        ("62", _tlv((reference_tag, reference))),
    ) + "6304"
    return body + _crc(body.encode())


def broken_crc(payload: str) -> str:
    return payload[:-4] + ("0000" if payload[-4:] != "0000" else "FFFF")
