"""The shared file hashes against digests computed here with hashlib on the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from storage.hashing import BLOCK, file_sha256, hash_files


def test_file_sha256_known_digest_and_multi_block(tmp_path: Path) -> None:
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    assert file_sha256(small) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )  # FIPS 180-2 test vector
    big = tmp_path / "big.bin"
    payload = bytes(range(256)) * (BLOCK // 256 * 2 + 3)  # spans three read blocks
    big.write_bytes(payload)
    assert file_sha256(str(big)) == hashlib.sha256(payload).hexdigest()


def test_hash_files_is_extra_then_files_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.mat", tmp_path / "b.pkl"
    first.write_bytes(b"first-file")
    second.write_bytes(b"second")
    expected = hashlib.sha256(b"salt" + b"first-file" + b"second").hexdigest()
    assert hash_files([first, second], extra=b"salt") == expected
    assert hash_files([second, first], extra=b"salt") != expected
    assert hash_files([first]) == file_sha256(first)
