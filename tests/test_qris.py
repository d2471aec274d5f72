"""QRIS payloads: real ones from ../shared/providers.md, an independent validator
(qriskit), and an independent CRC over every amount from 1 to 200,000."""

from __future__ import annotations

from decimal import Decimal

import pytest
import qriskit

from gateway import qris
from gateway.qris import MerchantProfile

# Real payloads named in ../shared/providers.md, copied from their public sources.
OTOMATIS_MOTIONPAY_DYNAMIC = (  # ddek881/upstream-nextjs QRIS_IMPLEMENTATION.md
    "00020101021226610016ID.MOTIONPAY.WWW01189360081632434311290208000349080303UMI"
    "51440014ID.CO.QRIS.WWW0215ID10243600782490303UMI52048299530336054071000.005802ID"
    "5918NURLA HARAPAN JAYA6013JAKARTA BARAT61051185062690618Additonalinfolabel0716"
    "03C9e23df11b967460232025083020192395535321563049F73"
)
MIDTRANS_GOPAY_DYNAMIC = (  # Midtrans docs, GoPay QRIS POS charge response
    "00020101021226620014COM.GO-JEK.WWW011993600914349052630340210G4905263030303UKE"
    "51440014ID.CO.QRIS.WWW0215AID0607336128660303UKE5204341453033605802ID5904Test"
    "6007BANDUNG6105402845409789000.0062475036c032f87c-f773-4619-aefa-675e1f06f921"
    "0703A016304A623"
)
DANA_STATIC = (  # verssache/qris-dinamis qris.php
    "00020101021126570011ID.DANA.WWW011893600915302259148102090225914810303UMI"
    "51440014ID.CO.QRIS.WWW0215ID10200176114730303UMI5204581253033605802ID"
    "5922Warung Sayur Bu Sugeng6010Kab. Demak610559567630458C7"
)
GOPAY_STATIC = (  # Rifaldo-dev/qrisdinamis README.md
    "00020101021126610014COM.GO-JEK.WWW01189360091436271261480210G6271261480303UMI"
    "51440014ID.CO.QRIS.WWW0215ID10253896834060303UMI5204573253033605802ID"
    "5909aldo soft6013PASAMAN BARAT61052656662070703A0163042275"
)
FABRICATED = (  # misterdevs/qris-static-to-dynamic README.md: CRC "M2B3" is not hex
    "00020101021126610014COM.GO-JEK.WWW01189360091234285490450210G6285936550303UMI"
    "51440014ID.CO.QRIS.WWW0215ID10253801632580303UMI5204504553033605802ID"
    "5910Misterdevs6007JAKARTA61051234562070703A016304M2B3"
)


def _crc_byte_table() -> list[int]:
    """CRC-16/CCITT-FALSE from its definition (poly 0x1021, MSB first), bit by bit, for
    each byte value: independent of the code under test (binascii.crc_hqx)."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_byte_table()


def reference_crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def test_crc_matches_the_standard_check_value() -> None:
    assert qris.crc16_ccitt_false(b"123456789") == 0x29B1 == reference_crc16(b"123456789")


@pytest.mark.parametrize(
    ("payload", "dynamic", "amount", "crc"),
    [
        (OTOMATIS_MOTIONPAY_DYNAMIC, True, Decimal("1000.00"), "9F73"),
        (MIDTRANS_GOPAY_DYNAMIC, True, Decimal("789000.00"), "A623"),
        (DANA_STATIC, False, None, "58C7"),
        (GOPAY_STATIC, False, None, "2275"),
    ],
)
def test_real_provider_payloads_decode_and_validate(
    payload: str, dynamic: bool, amount: Decimal | None, crc: str
) -> None:
    parsed = qris.parse(payload)
    assert qris.problems(payload) == []
    assert parsed.is_dynamic is dynamic
    assert parsed.amount == amount
    assert parsed.get("63") == crc == qris.crc_field(payload[:-4])
    assert parsed.get("53") == "360" and parsed.get("58") == "ID"
    # Re-encoding the decoded fields gives back the exact payload.
    assert qris.encode_tlv(list(parsed.fields)) == payload


@pytest.mark.parametrize(("payload", "name", "nmid"), [
    (OTOMATIS_MOTIONPAY_DYNAMIC, "NURLA HARAPAN JAYA", "ID1024360078249"),
    (MIDTRANS_GOPAY_DYNAMIC, "Test", "AID060733612866"),
    (DANA_STATIC, "Warung Sayur Bu Sugeng", "ID1020017611473"),
])
def test_the_merchant_name_and_nmid_payers_compare(payload: str, name: str,
                                                    nmid: str) -> None:
    parsed = qris.parse(payload)
    assert (parsed.merchant_name, parsed.nmid) == (name, nmid)


def test_transaction_references_are_found_wherever_the_provider_puts_them() -> None:
    assert "03C9e23df11b9674" in qris.parse(OTOMATIS_MOTIONPAY_DYNAMIC).references()  # 62.07
    assert "c032f87c-f773-4619-aefa-675e1f06f921" in qris.parse(
        MIDTRANS_GOPAY_DYNAMIC).references()  # 62.50
    assert qris.problems_for_transaction(OTOMATIS_MOTIONPAY_DYNAMIC, 1000,
                                         "03C9e23df11b9674") == []


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (FABRICATED, "not 4 uppercase hex"),
        (GOPAY_STATIC[:-4] + "2276", "CRC mismatch"),
        (OTOMATIS_MOTIONPAY_DYNAMIC[:-4] + "9f73", "not 4 uppercase hex"),
        (GOPAY_STATIC[:-8], "must be last"),
        (GOPAY_STATIC[:-3], "truncated"),
        (" " + GOPAY_STATIC, "whitespace"),
        ("", "empty"),
        ("0002010102", "truncated"),
    ],
)
def test_broken_payloads_are_refused_with_the_reason(payload: str, complaint: str) -> None:
    assert any(complaint in problem for problem in qris.problems(payload)), qris.problems(payload)


def test_a_provider_payload_for_another_transaction_is_refused() -> None:
    assert qris.problems_for_transaction(GOPAY_STATIC, 1000, "x") == [
        "not a dynamic QRIS (point of initiation 12)",
        "amount None is not 1000",
        "transaction reference 'x' not in tag 62",
    ]
    assert "amount '1000.00' is not 2000" in qris.problems_for_transaction(
        OTOMATIS_MOTIONPAY_DYNAMIC, 2000, "03C9e23df11b9674")


def test_our_dynamic_payload_has_the_amount_reference_and_point_of_initiation() -> None:
    payload = qris.build_dynamic(MerchantProfile(), 25000, "SIMTRX123")
    parsed = qris.parse(payload)
    assert parsed.get("01") == "12"
    assert parsed.get("54") == "25000"
    assert parsed.template("62") == {"05": "SIMTRX123"}
    assert qris.problems_for_transaction(payload, 25000, "SIMTRX123") == []


def test_an_independent_validator_accepts_our_payloads() -> None:
    for amount in (1, 1000, 1931, 25000, 10_000_000):
        payload = qris.build_dynamic(MerchantProfile(), amount, "SIMTRX123")
        assert qriskit.validate(payload) == [], amount
        assert qriskit.parse(payload).amount == Decimal(amount)


def test_crc_of_every_amount_from_1_to_200000_is_right_and_zero_padded() -> None:
    merchant = MerchantProfile()
    padded = 0
    sample = qris.build_dynamic(merchant, 1, "SIMTRX123")
    prefix = sample[: sample.index("5401")]
    prefix_crc = reference_crc16(prefix.encode())
    for amount in range(1, 200_001):
        payload = qris.build_dynamic(merchant, amount, "SIMTRX123")
        assert payload.startswith(prefix)
        # Continue the reference CRC from the shared prefix: same result, 5x faster.
        expected = reference_crc16(payload[len(prefix):-4].encode(), prefix_crc)
        crc = payload[-4:]
        assert crc == f"{expected:04X}", amount
        padded += crc.startswith("0")
    # About 1 in 16 CRCs has a leading zero: the padding path is really exercised.
    assert padded > 10_000


def test_luhn_check_of_the_default_merchant_pan() -> None:
    assert qris.luhn_valid(MerchantProfile().pan)
    assert not qris.luhn_valid(MerchantProfile().pan[:-1] + "8")
