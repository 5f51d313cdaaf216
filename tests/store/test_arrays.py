"""Array parameters built by trailseal.store.arrays: PostgreSQL reads back exactly the
values given (NULLs, empty strings and arrays, any text, any bytes, any bigint), as it reads
psycopg's own dump of the same list, and casts the text to the typed columns as a
literal would be."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailseal.store.arrays import (
    BigintArray,
    ByteaArray,
    TextArray,
    bigint_array,
    bytea_array,
    text_array,
)

_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _read(conn: psycopg.Connection, query: str, value: object) -> object:
    row = conn.execute(query, (value,)).fetchone()
    assert row is not None
    return row[0]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=40))
def test_text_arrays_read_back_as_given(conn, values):
    sent = text_array(values)
    assert isinstance(sent, TextArray)
    assert _read(conn, "SELECT %b", sent) == values
    assert conn.execute("SELECT %b = %b::text[]", (sent, values)).fetchone() == (True,)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), st.binary(max_size=300)), max_size=40))
def test_bytea_arrays_read_back_as_given(conn, values):
    sent = bytea_array(values)
    assert isinstance(sent, ByteaArray)
    assert _read(conn, "SELECT %b", sent) == values
    assert conn.execute("SELECT %b = %b::bytea[]", (sent, values)).fetchone() == (True,)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60))
def test_bigint_arrays_read_back_as_given(conn, values):
    sent = bigint_array(values)
    assert isinstance(sent, BigintArray)
    assert _read(conn, "SELECT %b", sent) == values
    assert conn.execute("SELECT %b = %b::bigint[]", (sent, values)).fetchone() == (True,)


def test_the_empty_array_and_the_array_of_one_null(conn):
    assert _read(conn, "SELECT %b", text_array([])) == []
    assert _read(conn, "SELECT cardinality(%b)", text_array([])) == 0
    assert _read(conn, "SELECT %b", text_array([None])) == [None]
    assert _read(conn, "SELECT %b", bytea_array([])) == []
    assert _read(conn, "SELECT %b", bytea_array([b""])) == [b""]
    assert _read(conn, "SELECT %b", bigint_array([])) == []


def test_typed_columns_are_parsed_from_their_text(conn):
    row = conn.execute(
        "SELECT %b::uuid[], %b::timestamptz[], %b::inet[], %b::bigint[]",
        (text_array(["01a24f30-8bbc-74a6-b3ba-debe20b01d97"]),
         text_array(["2026-12-07T05:00:00.123Z", None]),
         text_array(["10.0.0.1", "2001:db8::1", None]),
         text_array(["9223372036854775807", None])),
    ).fetchone()
    assert row is not None
    assert [str(u) for u in row[0]] == ["01a24f30-8bbc-74a6-b3ba-debe20b01d97"]
    assert row[1] == [datetime(2026, 12, 7, 5, 0, 0, 123000, tzinfo=UTC), None]
    assert [None if a is None else str(a) for a in row[2]] == ["10.0.0.1", "2001:db8::1", None]
    assert row[3] == [9223372036854775807, None]


def test_a_value_of_the_wrong_type_is_refused_by_the_cast(conn):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute("SELECT %b::uuid[]", (text_array(["not-a-uuid"]),))
