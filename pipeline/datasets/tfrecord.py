"""TFRecord files of `tf.train.Example` messages, read without TensorFlow.

Framing (per record): uint64 length (little endian), uint32 masked CRC-32C of the length
bytes, the payload, uint32 masked CRC-32C of the payload. Both CRCs are verified, so a
truncated or corrupted file is reported with its byte offset instead of yielding garbage.
The payload is decoded with a small protobuf wire-format reader that knows the four
messages of `tensorflow/core/example/feature.proto`; bytes values are returned exactly as
stored (a generic reader that turns them into a numpy `S` array strips trailing NUL bytes).
`read_record` re-reads one record by offset and checks it is the one parsed there before, so
readers can reference encoded frames instead of copying them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import numpy as np

from storage.errors import FormatError, TcmrError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")

Feature = list[bytes] | np.ndarray
"""A feature's values: list of bytes (bytes_list), float32 array or int64 array."""


class FramingError(FormatError):
    """The record framing is broken (truncation, CRC mismatch): the rest of the file is lost."""


class SourceChangedError(TcmrError):
    """A record differs from the one a reader parsed: the file changed, so parse it again.

    Not a bad frame to quarantine: the build that referenced the record is out of date.
    """


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate the CRC-32C right by 15 bits and add a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read_framed(handle: BinaryIO, path: Path, offset: int) -> tuple[bytes, int] | None:
    """(payload, its masked CRC) of the record at the handle's position; None at the end."""
    header = handle.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise FramingError(f"{path}: record at byte {offset}: truncated length header")
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        raise FramingError(f"{path}: record at byte {offset}: length CRC mismatch")
    payload = handle.read(length)
    footer = handle.read(_FOOTER.size)
    if len(payload) < length or len(footer) < _FOOTER.size:
        raise FramingError(f"{path}: record at byte {offset}: truncated payload")
    crc = _FOOTER.unpack(footer)[0]
    if masked_crc32c(payload) != crc:
        raise FramingError(f"{path}: record at byte {offset}: data CRC mismatch")
    return payload, crc


def iter_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, payload) of every record, verifying lengths and both CRCs."""
    with open(path, "rb") as handle:
        offset = 0
        while (record := _read_framed(handle, path, offset)) is not None:
            yield offset, record[0]
            offset += _HEADER.size + len(record[0]) + _FOOTER.size


def read_record(path: Path, offset: int, length: int, crc: int) -> bytes:
    """The payload of the record at `offset`, checked to be the one a reader parsed there.

    Both framing CRCs are verified as `iter_records` does, and the payload's length and CRC
    must equal `length` and `crc`; anything else (file gone, truncated, rewritten) raises
    SourceChangedError naming the file and the offset.
    """
    stale = f"{path}: record at byte {offset} changed since the dataset was parsed"
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            record = _read_framed(handle, path, offset)
    except FileNotFoundError as error:
        raise SourceChangedError(f"{stale}: the file no longer exists") from error
    except FramingError as error:
        raise SourceChangedError(f"{stale} ({error})") from error
    if record is None:
        raise SourceChangedError(f"{stale}: the file now ends before it")
    payload, found = record
    if len(payload) != length or found != crc:
        raise SourceChangedError(
            f"{stale}: {len(payload)} bytes with CRC {found:#010x}, "
            f"parsed as {length} bytes with CRC {crc:#010x}"
        )
    return payload


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("varint runs past the end of the message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (field number, wire type, varint value, raw bytes) of one message's fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value, raw = 0, b""
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            raw, pos = data[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(data, pos)
            raw, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        if pos > len(data):
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire, value, raw


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_feature(data: bytes) -> Feature:
    for kind, _, _, body in _fields(data):
        if kind == 1:  # BytesList: repeated bytes value = 1
            return [raw for number, _, _, raw in _fields(body) if number == 1]
        if kind == 2:  # FloatList: repeated float value = 1 (packed or not)
            chunks = [raw for number, _, _, raw in _fields(body) if number == 1]
            return np.frombuffer(b"".join(chunks), dtype="<f4").astype(np.float32)
        if kind == 3:  # Int64List: repeated int64 value = 1 (packed or not)
            values: list[int] = []
            for number, wire, value, raw in _fields(body):
                if number != 1:
                    continue
                if wire == 0:
                    values.append(_signed64(value))
                    continue
                pos = 0
                while pos < len(raw):
                    item, pos = _varint(raw, pos)
                    values.append(_signed64(item))
            return np.asarray(values, dtype=np.int64)
    return []


def parse_example(payload: bytes) -> dict[str, Feature]:
    """Decode a serialized `tf.train.Example` into {feature key: values}.

    Raises ValueError on malformed wire data; callers add the file and record context.
    """
    features: dict[str, Feature] = {}
    for number, _, _, body in _fields(payload):
        if number != 1:  # Example.features
            continue
        for entry_number, _, _, entry in _fields(body):
            if entry_number != 1:  # Features.feature (a map entry)
                continue
            key, value = "", b""
            for part, _, _, content in _fields(entry):
                if part == 1:
                    key = content.decode("utf-8")
                elif part == 2:
                    value = content
            features[key] = _decode_feature(value)
    return features
