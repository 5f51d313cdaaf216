"""The C module's quick confirmation of canonical JSON: sound (what it confirms is
canonical) and, within its subset, complete (every canonical entry there is confirmed,
or `trailseal verify` would silently lose its speed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.integrity import canonicalize
from trailseal.integrity._jcs import first_unconfirmed
from trailseal.integrity.canonical import _is_canonical_slowly, first_not_canonical

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
    import pytest

    with pytest.raises(TypeError):
        first_unconfirmed(["{}"])
    with pytest.raises(TypeError):
        first_unconfirmed(42)
