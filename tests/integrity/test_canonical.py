"""RFC 8785 canonicalization: published vectors, edge-case tables, and a reference cross-check."""

from __future__ import annotations

import enum
import json
import math
import struct
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.integrity import MAX_SAFE_INTEGER, CanonicalizationError, canonicalize

VECTORS = Path(__file__).parent / "vectors" / "jcs"
VECTOR_NAMES = ["french", "structures", "unicode", "values", "weird"]


def from_bits(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


# --- published vectors (cyberphone/json-canonicalization testdata) -----------------------


def test_vector_files_are_all_present() -> None:
    assert sorted(path.stem for path in (VECTORS / "input").glob("*.json")) == VECTOR_NAMES
    assert sorted(path.stem for path in (VECTORS / "output").glob("*.json")) == VECTOR_NAMES


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_published_vector(name: str) -> None:
    value = json.loads((VECTORS / "input" / f"{name}.json").read_bytes())
    expected = (VECTORS / "output" / f"{name}.json").read_bytes()
    assert canonicalize(value) == expected


def test_published_arrays_vector() -> None:
    value = json.loads('[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]')
    assert canonicalize(value) == b'[56,{"1":[],"10":null,"d":true}]'


# --- numbers ---------------------------------------------------------------------------

NUMBERS: list[tuple[object, str]] = [
    (0, "0"),
    (1, "1"),
    (-1, "-1"),
    (MAX_SAFE_INTEGER, "9007199254740991"),
    (-MAX_SAFE_INTEGER, "-9007199254740991"),
    (0.0, "0"),
    (-0.0, "0"),
    (1.0, "1"),
    (-1.0, "-1"),
    (56.0, "56"),
    (4.50, "4.5"),
    (0.1, "0.1"),
    (123.456, "123.456"),
    (-123.456, "-123.456"),
    (2e-3, "0.002"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (1e-6, "0.000001"),
    (1e-7, "1e-7"),
    (-1.5e-7, "-1.5e-7"),
    (1.5e-6, "0.0000015"),
    (1e30, "1e+30"),
    (1e-27, "1e-27"),
    (333333333.33333329, "333333333.3333333"),
    (1.2345e21, "1.2345e+21"),
    (123456789012345680000.0, "123456789012345680000"),
    # Integral floats at and beyond 2**53 print ECMAScript's shortest digits plus zeros,
    # not the exact binary integer (2**60 is 1152921504606846976).
    (float(2**53), "9007199254740992"),
    (float(2**60), "1152921504606847000"),
]

# RFC 8785 Appendix B: IEEE 754 bit patterns and their required serialisation.
APPENDIX_B: list[tuple[int, str]] = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),
]


@pytest.mark.parametrize(("value", "expected"), NUMBERS)
def test_number(value: object, expected: str) -> None:
    assert canonicalize(value) == expected.encode()


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B, ids=[f"{b:016x}" for b, _ in APPENDIX_B])
def test_rfc8785_appendix_b_number(bits: int, expected: str) -> None:
    assert canonicalize(from_bits(bits)) == expected.encode()


# --- strings ---------------------------------------------------------------------------

STRINGS: list[tuple[str, bytes]] = [
    ("", b'""'),
    ("plain", b'"plain"'),
    ('"', b'"\\""'),
    ("\\", b'"\\\\"'),
    ("/", b'"/"'),
    ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
    ("\x00", b'"\\u0000"'),
    ("\x0b", b'"\\u000b"'),
    ("\x1a", b'"\\u001a"'),
    ("\x1f", b'"\\u001f"'),
    (" ", b'" "'),
    ("\x7f", b'"\x7f"'),
    ("\x80", b'"\xc2\x80"'),
    ("\u2028\u2029", b'"\xe2\x80\xa8\xe2\x80\xa9"'),
    ("€", b'"\xe2\x82\xac"'),
    ("\U0001f600", b'"\xf0\x9f\x98\x80"'),
    ("</script>", b'"</script>"'),
    # Unicode normalisation is not JCS's business: the bytes stay as given.
    ("\u1e0d\u0307", b'"\xe1\xb8\x8d\xcc\x87"'),
]


@pytest.mark.parametrize(("value", "expected"), STRINGS)
def test_string(value: str, expected: bytes) -> None:
    assert canonicalize(value) == expected


def expected_ascii_char(code: int) -> bytes:
    """The JCS form of one ASCII character, written from RFC 8785 §3.2.2.2 directly."""
    short = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r"}
    if code in short:
        return short[code]
    if code < 0x20:
        return b"\\u%04x" % code
    if code in (0x22, 0x5C):
        return b"\\" + bytes([code])
    return bytes([code])


@pytest.mark.parametrize("code", range(0x80))
def test_every_ascii_character(code: int) -> None:
    assert canonicalize(chr(code)) == b'"' + expected_ascii_char(code) + b'"'


def test_every_non_ascii_scalar_value_is_raw_utf8() -> None:
    text = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert canonicalize(text) == b'"' + text.encode("utf-8") + b'"'


# --- structure and key order -----------------------------------------------------------


def test_no_whitespace_and_array_order_kept() -> None:
    value = {"b": [3, 1, 2], "a": {"y": None, "x": [True, False]}}
    assert canonicalize(value) == b'{"a":{"x":[true,false],"y":null},"b":[3,1,2]}'


def test_empty_containers() -> None:
    assert canonicalize([]) == b"[]"
    assert canonicalize({}) == b"{}"
    assert canonicalize([{}, [], [[]]]) == b"[{},[],[[]]]"


def test_keys_sort_by_ascii_code_units() -> None:
    value = {"d": 1, "10": 2, "1": 3, "a": 4, "A": 5, "": 6}
    assert canonicalize(value) == b'{"":6,"1":3,"10":2,"A":5,"a":4,"d":1}'


def test_astral_key_sorts_before_fb33() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16, which is below FB33; in code
    # points it would sort after.
    value = {"\ufb33": "dalet", "\U0001f600": "grinning"}
    assert canonicalize(value) == '{"\U0001f600":"grinning","\ufb33":"dalet"}'.encode()


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonicalize(value) == expected.encode()


def test_insertion_order_does_not_matter() -> None:
    keys = ["\U0001f600", "\ufb33", "b", "a", "\u00e9"]
    forward = {key: index for index, key in enumerate(keys)}
    backward = {key: forward[key] for key in reversed(keys)}
    assert canonicalize(forward) == canonicalize(backward)


# --- errors ----------------------------------------------------------------------------


class Level(enum.IntEnum):
    HIGH = 1


ERRORS: list[tuple[str, object, tuple[str | int, ...], str]] = [
    ("nan", math.nan, (), "not a JSON number"),
    ("inf", {"a": [1, math.inf]}, ("a", 1), "not a JSON number"),
    ("-inf", [-math.inf], (0,), "not a JSON number"),
    ("2**53", {"n": 2**53}, ("n",), "outside"),
    ("-(2**53)", [0, -(2**53)], (1,), "outside"),
    ("huge int", 10**400, (), "outside"),
    ("lone surrogate in value", {"x": ["ok", "bad\ud800"]}, ("x", 1), "lone surrogate"),
    ("lone surrogate at root", "\udfff", (), "lone surrogate"),
    ("surrogate pair as two code points", "\ud83d\ude00", (), "lone surrogate"),
    ("lone surrogate in key", {"a": 1, "\u00e9": 2, "k\udc00": 3}, ("k\udc00",), "lone surrogate"),
    ("lone surrogate in only key", {"n": {"\ud800": 1}}, ("n", "\ud800"), "lone surrogate"),
    ("int key", {"a": {1: "one"}}, ("a", 1), "not str"),
    ("None key", {None: 1}, ("None",), "not str"),
    ("tuple key", {(1, 2): 1}, ("(1, 2)",), "not str"),
    ("set", {"s": {1, 2}}, ("s",), "set is not a JSON type"),
    ("tuple", [[1], (1, 2)], (1,), "tuple is not a JSON type"),
    ("bytes", {"b": b"x"}, ("b",), "bytes is not a JSON type"),
    ("Decimal", {"d": Decimal("1.5")}, ("d",), "Decimal is not a JSON type"),
    ("IntEnum", [Level.HIGH], (0,), "Level is not a JSON type"),
    ("dict subclass", {"o": OrderedDict(a=1)}, ("o",), "OrderedDict is not a JSON type"),
    ("object", [object()], (0,), "object is not a JSON type"),
]


@pytest.mark.parametrize(
    ("value", "path", "message"), [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS]
)
def test_error(value: object, path: tuple[str | int, ...], message: str) -> None:
    with pytest.raises(CanonicalizationError, match=message) as caught:
        canonicalize(value)
    assert caught.value.path == path
    assert isinstance(caught.value, ValueError)


def test_error_message_shows_path() -> None:
    with pytest.raises(CanonicalizationError) as caught:
        canonicalize({"changes": [{"amount": math.nan}]})
    assert str(caught.value) == "nan is not a JSON number at $['changes'][0]['amount']"


def test_largest_safe_integers_are_accepted() -> None:
    assert canonicalize([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[9007199254740991,-9007199254740991]"
    )


def test_bool_is_not_an_int() -> None:
    assert canonicalize([True, False, 1, 0]) == b"[true,false,1,0]"


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_objects(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_default_depth_limit_allows_64_levels() -> None:
    assert canonicalize(nested_lists(64)) == b"[" * 64 + b"]" * 64
    assert canonicalize(nested_objects(64)).count(b"{") == 64


def test_nesting_beyond_default_depth_is_rejected() -> None:
    with pytest.raises(CanonicalizationError, match="max_depth=64") as caught:
        canonicalize(nested_lists(65))
    assert caught.value.path == (0,) * 64
    with pytest.raises(CanonicalizationError, match="max_depth=64") as caught:
        canonicalize(nested_objects(65))
    assert caught.value.path == ("k",) * 64


def test_custom_max_depth() -> None:
    assert canonicalize({"a": [1]}, max_depth=2) == b'{"a":[1]}'
    with pytest.raises(CanonicalizationError) as caught:
        canonicalize({"a": [[1]]}, max_depth=2)
    assert caught.value.path == ("a", 0)
    assert canonicalize("scalar", max_depth=0) == b'"scalar"'


def test_reparsing_a_large_integral_float_gives_an_unsafe_int() -> None:
    # 1e20 is a valid double and canonicalises without an exponent; Python's json then
    # reads that text back as an int beyond 2**53, which is rejected. Verification must
    # hash the stored canonical bytes rather than re-canonicalise a re-parse of them.
    text = canonicalize(1e20)
    assert text == b"100000000000000000000"
    with pytest.raises(CanonicalizationError, match="outside"):
        canonicalize(json.loads(text))


# --- agreement with the reference implementation ---------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_matches_reference_implementation(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_matches_reference_and_round_trips(value: float) -> None:
    text = canonicalize(value)
    assert text == rfc8785.dumps(value)
    assert float(text) == value


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1).map(from_bits).filter(math.isfinite))
def test_float_bit_patterns_match_reference(value: float) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), st.integers(0, 9), max_size=12))
def test_keys_follow_utf16_order(value: dict[str, int]) -> None:
    parsed = json.loads(canonicalize(value))
    assert list(parsed) == sorted(value, key=lambda key: key.encode("utf-16-be"))
