"""HLS `METHOD=AES-128` encryption of whole segments: AES-128-CBC over the entire file,
PKCS#7 padding, the IV the playlist states (RFC 8216, 5.2)."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.delivery.keys import IV_BYTES, KEY_BYTES

_BLOCK_BITS = 128


def _cipher(key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    # AES would take 24- and 32-byte keys too; HLS's AES-128 takes only 16.
    if len(key) != KEY_BYTES:
        raise ValueError(f"an AES-128 key is {KEY_BYTES} bytes, not {len(key)}")
    if len(iv) != IV_BYTES:
        raise ValueError(f"an IV is {IV_BYTES} bytes, not {len(iv)}")
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def encrypt_segment(data: bytes, key: bytes, iv: bytes) -> bytes:
    """The segment as a player with `key` and `iv` decrypts it: always 1 to 16 bytes
    longer than `data`, a multiple of 16."""
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = _cipher(key, iv).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def decrypt_segment(data: bytes, key: bytes, iv: bytes) -> bytes:
    """The inverse of `encrypt_segment`. ValueError when `data` is not a whole number of
    blocks or its padding is wrong (a wrong key almost always shows as wrong padding)."""
    decryptor = _cipher(key, iv).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    return unpadder.update(padded) + unpadder.finalize()
