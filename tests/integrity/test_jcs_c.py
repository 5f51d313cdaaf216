"""The C module's quick confirmation and writing of canonical JSON: sound (what it
confirms is canonical; what it writes is what the Python code writes) and, within its
subset, complete (every canonical entry there is confirmed and every value written, or
verify and ingest would silently lose their speed)."""

from __future__ import annotations

import enum
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.integrity import canonical, canonicalize
from trailseal.integrity._jcs import canonicalize as c_canonicalize
from trailseal.integrity._jcs import first_unconfirmed
from trailseal.integrity.canonical import (
    CanonicalizationError,
    _is_canonical_slowly,
    first_not_canonical,
)

# Values in the subset: integers of at most 15 digits, no float, BMP text only.
bmp_text = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)))
subset_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15) + 1, 10**15 - 1) | bmp_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(bmp_text, inner, max_size=4),
    max_leaves=16,
)
any_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def confirmed(data: bytes) -> bool:
    return first_unconfirmed([data]) == 1


@settings(max_examples=500, deadline=None)
@given(subset_values)
def test_canonical_bytes_in_the_subset_are_confirmed(value):
    assert confirmed(canonicalize(value))


_spellings = st.sampled_from([
    b" ", b"1.0", b"1e2", b"-0", b"01", b"9007199254740993", b"\\u0041", b"\\u001F",
    b"\\u000a", b"\\/", b'"a":1,', b'"":0,', b"[", b"]", b"{", b"}", b",", b":", b'"',
    b"\\", b"\x00", b"\x1f", b"\x7f", b"\xc3", b"\xc0\x80", b"\xed\xa0\x80", b"\xe0\x80\x80",
    b"\xf0\x9f\x98\x80", b"\xff", b"tru", b"nul", b"-", b"\\u00e9",
])


@settings(max_examples=1500, deadline=None)
@given(any_values, st.lists(st.tuples(st.integers(0, 300), _spellings), max_size=3),
       st.integers(0, 300))
def test_whatever_it_confirms_is_canonical(value, insertions, cut):
    try:
        data = canonicalize(value)
    except ValueError:  # lone surrogates in generated text
        return
    for at, spelling in insertions:
        data = data[:at] + spelling + data[at:]
    for candidate in (data, data[:cut], data[cut:]):
        if confirmed(candidate):
            assert _is_canonical_slowly(candidate), candidate


def test_every_bmp_character_as_a_key_and_a_value():
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert confirmed(canonicalize({"k" + char: char, "a": [char]})), hex(code)


def test_keys_are_ordered_by_their_characters_not_their_escapes():
    assert confirmed(b'{"\\n":1,"A":2}')  # U+000A before U+0041, though "\" > "A"
    assert not confirmed(b'{"A":2,"\\n":1}')
    assert confirmed(b'{"a":1,"ab":2,"b":3}')
    assert not confirmed(b'{"ab":1,"a":2}')
    assert not confirmed(b'{"a":1,"a":1}')  # a duplicate
    assert confirmed(b'{"\\"":1,"\\\\":2}')  # U+0022 before U+005C


def test_what_it_leaves_to_python():
    for data in (b"[1.5]", b"[1e+21]", b"[1234567890123456]", "[\"\U0001f600\"]".encode(),
                 b"[" * 65 + b"]" * 65, b"", b"[1] ", b"{}{}"):
        assert not confirmed(data), data
    assert confirmed(b"[" * 64 + b"]" * 64)
    assert confirmed(b"[123456789012345,-123456789012345,0,-1]")


def test_runs_resume_after_an_entry_left_to_python():
    entries = [b'{"a":1}', b'{"a":1.5}', b'{"b":2}', b'{"a":1.0}', b'{"c":3}']
    assert first_unconfirmed(entries) == 1
    assert first_unconfirmed(entries, 2) == 3
    assert first_unconfirmed(entries, 4) == 5
    assert first_not_canonical(entries) == 3  # 1.5 is canonical, 1.0 is not


def test_it_takes_only_bytes():
    with pytest.raises(TypeError):
        first_unconfirmed(["{}"])
    with pytest.raises(TypeError):
        first_unconfirmed(42)


# -- writing -----------------------------------------------------------------------------

def python_canonicalize(value, max_depth=64):
    """What the Python code alone writes (or raises) for ``value``."""
    built, canonical._c_canonicalize = canonical._c_canonicalize, None
    try:
        return canonicalize(value, max_depth=max_depth)
    finally:
        canonical._c_canonicalize = built


@settings(max_examples=800, deadline=None)
@given(any_values)
def test_what_it_writes_is_what_python_writes(value):
    written = c_canonicalize(value, 64)
    try:
        expected = python_canonicalize(value)
    except CanonicalizationError:
        assert written is None  # left to Python, which raises
        return
    assert written is None or written == expected
    assert canonicalize(value) == expected


@settings(max_examples=500, deadline=None)
@given(subset_values)
def test_it_writes_every_value_in_its_subset(value):
    assert c_canonicalize(value, 64) == python_canonicalize(value)


def test_every_bmp_character_is_written_as_python_writes_it():
    for code in range(0x10000):
        char = chr(code)
        value = {"k" + char: char, "a": [char]}
        if 0xD800 <= code <= 0xDFFF:
            assert c_canonicalize(value, 64) is None
            continue
        assert c_canonicalize(value, 64) == python_canonicalize(value), hex(code)


class Level(enum.IntEnum):
    HIGH = 1


class Text(str):
    pass


def test_what_it_leaves_to_python_to_write_or_refuse():
    for value in (1.5, 1.0, [2**53], [-(2**53)], {1: "a"}, {"\U0001f600": 1}, "\ud800",
                  (1, 2), Level.HIGH, Text("a"), {"a": {1, 2}}, b"x", [[["deep"]]]):
        depth = 2 if value == [[["deep"]]] else 64
        assert c_canonicalize(value, depth) is None, value
    assert c_canonicalize([2**53 - 1, -(2**53) + 1], 64) == b"[9007199254740991,-9007199254740991]"
    assert c_canonicalize(["\U0001f600"], 64) == "[\"\U0001f600\"]".encode()  # values may
    assert c_canonicalize([[["deep"]]], 3) == b'[[["deep"]]]'


def test_deep_values_never_reach_the_c_stack():
    value: list = []
    for _ in range(50_000):
        value = [value]
    assert c_canonicalize(value, sys.maxsize) is None  # left to Python's recursion limit
    assert c_canonicalize(value, 2**80) is None


def test_a_string_is_judged_alike_wherever_its_first_special_byte_falls():
    # Plain characters are taken eight at a time up to the first that is not plain: put
    # each kind of special byte at every offset from the start of a string, before and
    # after a word's end, and end strings at every offset too.
    spellings = (b'\\"', b"\\\\", b"\\n", b"\\u001f", b"\\u000a", b"\\/", b"\xc3\xa9",
                 b"\xe2\x82\xac", b"\xed\xa0\x80", b"\x00", b"\x1f", b"\x7f", b"\xff", b'"',
                 b"\\")
    for length in range(20):
        for at in range(length + 1):
            for spelling in spellings:
                content = b"a" * at + spelling + b"~" * (length - at)
                for data in (b'["' + content + b'"]', b'{"' + content + b'":1}',
                             b'{"' + content + b'":1,"' + content + b'~":2}'):
                    assert confirmed(data) == _is_canonical_slowly(data), data
