"""is_canonical: its quick path (CPython's encoder) agrees with full canonicalisation."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.integrity import canonicalize
from trailseal.integrity.canonical import is_canonical

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
