"""Whole-segment AES-128-CBC with PKCS#7, as HLS METHOD=AES-128 players decrypt it."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.crypto import decrypt_segment, encrypt_segment

keys = st.binary(min_size=16, max_size=16)
ivs = st.binary(min_size=16, max_size=16)
segments = st.binary(max_size=4096)


def test_the_first_block_is_the_nist_cbc_vector() -> None:
    """NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt, first block; then one block of padding."""
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    encrypted = encrypt_segment(plain, key, iv)
    assert encrypted[:16] == bytes.fromhex("7649abac8119b246cee98e9b12e9197d")
    assert len(encrypted) == 32  # a whole block of padding after a whole block


@given(segments, keys, ivs)
def test_what_is_encrypted_decrypts_to_itself(data: bytes, key: bytes, iv: bytes) -> None:
    encrypted = encrypt_segment(data, key, iv)
    assert len(encrypted) % 16 == 0 and 1 <= len(encrypted) - len(data) <= 16
    assert decrypt_segment(encrypted, key, iv) == data


@given(st.binary(min_size=16, max_size=4096), keys, keys, ivs)
def test_the_wrong_key_never_gives_the_segment_back(data: bytes, key: bytes, wrong: bytes,
                                                    iv: bytes) -> None:
    if wrong == key:
        return
    encrypted = encrypt_segment(data, key, iv)
    with contextlib.suppress(ValueError):  # wrong padding: what a wrong key mostly gives
        assert decrypt_segment(encrypted, wrong, iv) != data


@given(st.binary(min_size=32, max_size=512), keys, ivs, ivs)
def test_the_iv_changes_the_whole_first_block(data: bytes, key: bytes, iv: bytes,
                                              other: bytes) -> None:
    if iv != other:
        assert encrypt_segment(data, key, iv)[:16] != encrypt_segment(data, key, other)[:16]


@pytest.mark.parametrize(("key", "iv"), [(b"k" * 15, b"i" * 16), (b"k" * 24, b"i" * 16),
                                         (b"k" * 32, b"i" * 16), (b"k" * 16, b"i" * 8)])
def test_only_aes_128_with_a_block_sized_iv(key: bytes, iv: bytes) -> None:
    with pytest.raises(ValueError):
        encrypt_segment(b"media", key, iv)
    with pytest.raises(ValueError):
        decrypt_segment(b"m" * 16, key, iv)


def test_a_truncated_segment_does_not_decrypt() -> None:
    encrypted = encrypt_segment(b"m" * 100, b"k" * 16, b"i" * 16)
    with pytest.raises(ValueError):
        decrypt_segment(encrypted[:-1], b"k" * 16, b"i" * 16)
