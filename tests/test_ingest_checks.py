"""ingest's check that values can be stored and hashed exactly: the quick pass in C
never admits what the item-by-item check refuses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.ingest import MAX_DEPTH, _fits, _fits_quickly, json_problems

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text()
    | st.sampled_from(["a\x00b", "\ud800", "\U0001f600", "\x00"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text() | st.sampled_from(["\x00", "\ud800"]), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=1000, deadline=None)
@given(values)
def test_the_quick_pass_admits_only_what_fits(value):
    if _fits_quickly(value):
        assert _fits(value, 0)
    assert (json_problems(value) == []) == _fits(value, 0)


def nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def test_the_depth_limit_is_the_same():
    for depth in range(MAX_DEPTH - 2, MAX_DEPTH + 3):
        for leaf in (1, {}, [], "x"):
            value = nested(depth, leaf)
            assert not _fits_quickly(value) or _fits(value, 0), (depth, leaf)
    assert _fits_quickly(nested(MAX_DEPTH - 1, 1))  # the common case takes the quick pass
    assert not _fits(nested(MAX_DEPTH + 1, 1), 0)
    assert json_problems(nested(MAX_DEPTH + 1, 1))


def test_what_the_quick_pass_refuses_is_named():
    assert not _fits_quickly({"a": "x\x00"})
    assert json_problems({"a": "x\x00"}) == [("a", "contains a NUL character")]
    assert not _fits_quickly({"a\x00": 1})
    assert not _fits_quickly({"a": 2**53})
    assert _fits_quickly({"a": 2**53 - 1, "b": ["x", True, None]})
