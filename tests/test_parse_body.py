"""A request body is read quickly by orjson when it is plain, and by the strict parser
otherwise: for any bytes at all, the value (types included) or the refusal is the
strict parser's."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal import ingest
from trailseal.errors import BadJSON
from trailseal.integrity._jcs import whole


def tagged(value: Any) -> Any:
    """``value`` with every item's type beside it (so 1 and 1.0 and True differ), and
    objects as their members in order."""
    if isinstance(value, dict):
        return ("dict", [(k, tagged(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [tagged(v) for v in value])
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def outcome(raw: bytes, *, quick: bool) -> Any:
    saved = ingest._whole
    if not quick:
        ingest._whole = None
    try:
        return ("value", tagged(ingest._loads(raw)))
    except BadJSON as exc:
        return ("refused", str(exc))
    finally:
        ingest._whole = saved


# -- JSON texts written every which way ---------------------------------------------------

# JSON's four whitespace characters, and now and then one that is not JSON's.
SPACE = st.sampled_from(["", "", "", "", " ", "\n", "\t", "\r\n  "] * 4 + ["\f", "\x0b", "\xa0"])
NUMBER = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-(2**53), 2**53).map(str),
    st.sampled_from(["-0", "0", "1.0", "1e2", "1E+2", "-0.0", "1e400", "-1e400", "0.1e-400",
                     "NaN", "Infinity", "01", "1.", ".5", "+1", "18446744073709551616",
                     "-9223372036854775809", "9" * 30]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
CHARS = st.text(alphabet=st.characters(codec=None, categories=None), max_size=6)


@st.composite
def string(draw: st.DrawFn) -> str:
    """A JSON string: characters as they are, escaped (\\uXXXX, \\/, \\"), or a lone
    surrogate's escape."""
    parts = []
    for ch in draw(CHARS):
        how = draw(st.sampled_from(["plain", "plain", "u", "short"]))
        if how == "u" and ord(ch) < 0x10000:
            parts.append(f"\\u{ord(ch):04x}")
        elif ch in '"\\' or ord(ch) < 0x20 or how == "short":
            parts.append(json.dumps(ch)[1:-1])
        else:
            parts.append(ch)
    parts.append(draw(st.sampled_from(["", "", "", ":", "\\u003a", "\\ud800", "\\/", '\\"'])))
    return '"' + "".join(parts) + '"'


@st.composite
def text(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["scalar", "scalar", "list", "object"] if depth < 4 else
                                ["scalar"]))
    s = draw(SPACE)
    if kind == "scalar":
        return s + draw(st.one_of(NUMBER, string(), st.sampled_from(["true", "null"])))
    if kind == "list":
        items = draw(st.lists(text(depth + 1), max_size=3))
        return s + "[" + ",".join(items) + s + "]"
    keys = draw(st.lists(string(), max_size=3))
    if keys and draw(st.booleans()):
        keys.append(draw(st.sampled_from(keys)))  # a repeated key
    members = [k + draw(SPACE) + ":" + draw(text(depth + 1)) for k in keys]
    return s + "{" + ",".join(members) + "}" + draw(SPACE)


@settings(max_examples=600, deadline=None)
@given(text())
def test_any_text_reads_as_the_strict_parser_reads_it(body):
    raw = body.encode("utf-8", "surrogatepass")  # a raw lone surrogate: not UTF-8
    assert outcome(raw, quick=True) == outcome(raw, quick=False)


@settings(max_examples=300, deadline=None)
@given(text(), st.binary(max_size=3), st.integers(0, 200))
def test_any_bytes_read_as_the_strict_parser_reads_them(body, junk, at):
    good = body.encode("utf-8", "surrogatepass")
    raw = good[:at] + junk + good[at:]
    assert outcome(raw, quick=True) == outcome(raw, quick=False)


@pytest.mark.parametrize("raw", [
    b'{"a":1,"a":2}',
    b'{"a\\u003a":1,"a\\u003a":2}',  # the repeated key holds a colon, escaped
    b'{"a:":1,"a:":2}',
    b'{"a\\"":1,"a\\"":2}',  # and a quote
    b'{"events":[{"x":{"k":1,"k":1}}]}',
    b'{"a":[{"b":1},{"b":2,"b":3}]}',
])
def test_a_repeated_key_is_refused(raw):
    assert not whole(raw, orjson.loads(raw), ingest.MAX_DEPTH)
    with pytest.raises(BadJSON, match="duplicate object key"):
        ingest.parse_body(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"n":18446744073709551616}', 18446744073709551616),  # orjson: a float
    (b'{"n":-9223372036854775809}', -9223372036854775809),
    (b'{"n":1e400}', float("inf")),  # orjson refuses it
    (b'{"s":"\\ud800"}', "\ud800"),  # likewise
])
def test_what_orjson_reads_otherwise_is_read_strictly(raw, expected):
    value = ingest.parse_body(raw)[0]
    assert tagged(next(iter(value.values()))) == tagged(expected)


def test_a_plain_batch_is_read_quickly():
    """The quick reading is not dead code: a batch of plain events takes it."""
    raw = json.dumps({"events": [{
        "actor": {"type": "user", "id": "u_1", "name": "A: B"}, "action": "user.login",
        "target": {"type": "user", "id": "u_1"}, "context": {"ip": "198.51.100.7"},
        "metadata": {"n": 2**60, "note": 'say "hi": \\ ok', "list": [1, True, None, {}]},
    }] * 3}).encode()
    assert whole(raw, orjson.loads(raw), ingest.MAX_DEPTH)
    assert ingest.parse_body(raw) == json.loads(raw)["events"]


def test_nesting_past_the_limit_is_left_to_the_strict_parser():
    deep = b"[" * (ingest.MAX_DEPTH + 1) + b"]" * (ingest.MAX_DEPTH + 1)
    assert not whole(deep, orjson.loads(deep), ingest.MAX_DEPTH)
    assert whole(deep[1:-1], orjson.loads(deep[1:-1]), ingest.MAX_DEPTH)
    very = b"[" * 5000 + b"]" * 5000
    with pytest.raises(BadJSON, match="nests too deeply"):
        ingest.parse_body(very)
