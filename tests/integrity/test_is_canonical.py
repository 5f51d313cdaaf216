"""is_canonical: its quick paths (the C module; msgspec with sorted keys) agree with
full canonicalisation. Every test runs with the C module and without it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.integrity import canonical, canonicalize
from trailseal.integrity.canonical import _is_canonical_slowly, first_not_canonical, is_canonical


@pytest.fixture(autouse=True, scope="module", params=["with C", "without C"])
def quick_path(request):
    built = canonical._first_unconfirmed
    assert built is not None, "the C module trailseal.integrity._jcs was not built"
    if request.param == "without C":
        canonical._first_unconfirmed = None
    yield request.param
    canonical._first_unconfirmed = built

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_bytes_are_canonical(value):
    try:
        data = canonicalize(value)
    except ValueError:  # lone surrogates in generated text
        return
    assert is_canonical(data)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_other_spellings_are_not(value):
    try:
        data = canonicalize(value)
    except ValueError:
        return
    for other in (
        json.dumps(value, sort_keys=True).encode(),  # spaces, ASCII escapes, float forms
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),  # key order
    ):
        assert is_canonical(other) == (other == data)


def test_known_cases():
    assert is_canonical(b'{"a":1,"b":[true,null,"\\u001f"]}')
    assert not is_canonical(b'{"b":1,"a":2}')
    assert not is_canonical(b'{"a":1.0}')
    assert is_canonical(b'{"a":1.5}')
    assert not is_canonical(b'{"a":"\\u00e9"}')
    assert is_canonical('{"a":"é"}'.encode())
    assert is_canonical(b"100000000000000000000")  # the double 1e20
    assert not is_canonical(b'"\\ud800"')
    assert not is_canonical(b"{")
    assert is_canonical('{"\U0001f600":1,"\ufb33":2}'.encode())  # UTF-16 order
    assert not is_canonical('{"\ufb33":2,"\U0001f600":1}'.encode())


def test_the_quick_path_escapes_every_bmp_character_as_jcs():
    # The quick path trusts msgspec's string escapes to be JCS's; check every character
    # it can meet there (astral ones always take the full path), as a key and a value.
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        data = canonicalize({"k" + char: char, "a": [char]})
        assert is_canonical(data), hex(code)


def test_what_only_the_full_path_can_judge():
    assert is_canonical(b"[" * 65 + b"]" * 65)  # ingest's depth limit is a policy
    assert not is_canonical(b"[" * 100_000 + b"]" * 100_000)  # too deep to parse at all
    assert is_canonical(b"[9007199254740991]")
    assert not is_canonical(b"[9007199254740993]")  # beyond 2**53: JCS writes the double
    assert is_canonical(b"[9007199254740992]")  # ... which is exactly this one
    assert is_canonical(b'["12345678901234567890"]')  # a long digit run inside a string
    assert not is_canonical(b"[-0]")
    assert not is_canonical(b"[1E2]")
    assert is_canonical(b"[100]")
    assert not is_canonical(b"[1e21]")
    assert is_canonical(b"[1e+21]")
    assert not is_canonical(b'{"a":1,"a":1}')
    assert not is_canonical(b'{"a":1} ')
    assert not is_canonical(b"\xff")


_spellings = st.sampled_from([b" ", b"1.0", b"1e2", b"-0", b"9007199254740993", b"\\u0041",
                              b'"a":1,', b"[", b"]", b"{", b"}", b",", b"\xf0\x9f\x98\x80"])


@settings(max_examples=400, deadline=None)
@given(json_values, st.integers(0, 200), _spellings)
def test_the_quick_path_agrees_with_the_full_one(value, at, spelling):
    try:
        data = canonicalize(value)
    except ValueError:
        return
    for candidate in (data, data[:at] + spelling + data[at:]):
        assert is_canonical(candidate) == _is_canonical_slowly(candidate), candidate


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6), st.integers(0, 5), _spellings)
def test_a_run_names_its_first_entry_that_is_not(values, which, spelling):
    entries = []
    for value in values:
        try:
            entries.append(canonicalize(value))
        except ValueError:
            return
    which %= len(entries)
    entries[which] = spelling + entries[which]
    want = next((i for i, e in enumerate(entries) if not _is_canonical_slowly(e)), None)
    assert first_not_canonical(entries) == want
