"""Array parameters written in PostgreSQL's binary array format in one pass.

A batch's columns travel as one array parameter each. psycopg dumps a list element by
element through its generic machinery (a dumper looked up and called per element): for
the inbox write's eighteen columns that was a third of the API's Python per event, and
the sequencer's positions, seqs and chain hashes ran to thousands of elements a batch.
Here a column of text, of bytes or of integers becomes its array in one loop (one
``struct.pack`` for integers), and psycopg sends the bytes as they are. The inbox's
typed values (uuid, timestamptz, inet, bigint) go as their text and are cast in the
statement, where PostgreSQL parses them with the same input functions as any literal.

The format (PostgreSQL's ``array_recv``): the number of dimensions, a flag for NULLs,
the element type's OID, then per dimension its length and lower bound (1), then each
element as a 4-byte length (-1: NULL) and its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_TEXT, _TEXT_ARRAY = 25, 1009
_BYTEA, _BYTEA_ARRAY = 17, 1001
_INT8, _INT8_ARRAY = 20, 1016
_NULL = b"\xff\xff\xff\xff"
_LENGTH = struct.Struct(">i").pack
_ONE_DIMENSION = struct.Struct(">iiIii").pack  # ndim, has NULLs, element OID, length, 1
_NO_DIMENSION = struct.Struct(">iiI").pack  # ndim 0, no NULLs, element OID: empty


class TextArray(bytes):
    """A ``text[]`` parameter, already in the binary format."""


class ByteaArray(bytes):
    """A ``bytea[]`` parameter, already in the binary format."""


class BigintArray(bytes):
    """A ``bigint[]`` parameter, already in the binary format."""


def _array(values: Sequence[bytes | None], element: int) -> bytes:
    if not values:
        return _NO_DIMENSION(0, 0, element)
    parts = []
    nulls = 0
    for value in values:
        if value is None:
            parts.append(_NULL)
            nulls = 1
        else:
            parts.append(_LENGTH(len(value)))
            parts.append(value)
    return _ONE_DIMENSION(1, nulls, element, len(values), 1) + b"".join(parts)


def text_array(values: Sequence[str | None]) -> TextArray:
    """``values`` (None for NULL) as a ``text[]``."""
    return TextArray(_array([None if v is None else v.encode() for v in values], _TEXT))


def bytea_array(values: Sequence[bytes | None]) -> ByteaArray:
    """``values`` (None for NULL) as a ``bytea[]``."""
    return ByteaArray(_array(values, _BYTEA))


def bigint_array(values: Sequence[int]) -> BigintArray:
    """``values`` (no NULLs) as a ``bigint[]``: each element its length, 8, and itself."""
    if not values:
        return BigintArray(_NO_DIMENSION(0, 0, _INT8))
    count = len(values)
    body = struct.pack(">" + "iq" * count, *[part for v in values for part in (8, v)])
    return BigintArray(_ONE_DIMENSION(1, 0, _INT8, count, 1) + body)


class _TextArrayDumper(Dumper):
    format = Format.BINARY
    oid = _TEXT_ARRAY

    def dump(self, obj: TextArray) -> bytes:
        return obj


class _ByteaArrayDumper(Dumper):
    format = Format.BINARY
    oid = _BYTEA_ARRAY

    def dump(self, obj: ByteaArray) -> bytes:
        return obj


class _BigintArrayDumper(Dumper):
    format = Format.BINARY
    oid = _INT8_ARRAY

    def dump(self, obj: BigintArray) -> bytes:
        return obj


psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)
psycopg.adapters.register_dumper(ByteaArray, _ByteaArrayDumper)
psycopg.adapters.register_dumper(BigintArray, _BigintArrayDumper)
