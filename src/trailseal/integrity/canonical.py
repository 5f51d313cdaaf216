"""RFC 8785 JSON Canonicalization Scheme (JCS): one JSON value, one byte string.

Two equal events must hash equally whoever serialised them, so the bytes that enter
`leaf_hash` come from here and nowhere else. Values are plain Python JSON values
(dict with str keys, list, str, int, float, bool, None); anything JCS cannot represent
exactly is rejected with a `CanonicalizationError` that names where it sits.
"""

from __future__ import annotations

import json.encoder
import math
import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

_first_unconfirmed: Callable[[Sequence[bytes], int], int] | None
_c_canonicalize: Callable[[object, int], bytes | None] | None
try:  # the C module (optional at install): the common case, confirmed and written quickly
    from trailseal.integrity._jcs import canonicalize as _c_canonicalize
    from trailseal.integrity._jcs import first_unconfirmed as _first_unconfirmed
except ImportError:
    _first_unconfirmed = _c_canonicalize = None

__all__ = [
    "MAX_SAFE_INTEGER",
    "CanonicalizationError",
    "canonicalize",
    "canonicalize_quickly",
    "first_not_canonical",
    "is_canonical",
    "parse_canonical",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer an IEEE 754 double holds exactly; JCS numbers are doubles."""

DEFAULT_MAX_DEPTH = 64

Path = tuple[str | int, ...]

# CPython's JSON string encoder, in its ensure_ascii=False form, escapes exactly what
# JCS escapes: `"`, `\`, the short forms \b \f \n \r \t, and the other controls below
# U+0020 as lowercase \u00xx. DEL, U+2028 and U+2029 pass through raw, as JCS wants.
_quote = json.encoder.encode_basestring

# Below 2**53 an integral double prints as its exact integer in ECMAScript, so the
# common `1.0` skips the digit reformatting.
_EXACT_FLOAT_BOUND = float(2**53)


class CanonicalizationError(ValueError):
    """A value that has no RFC 8785 form; `path` leads from the root to it."""

    def __init__(self, message: str, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path: Path = path

    def __str__(self) -> str:
        return f"{self.message} at {_show_path(self.path)}"


def canonicalize_quickly(value: object, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes | None:
    """``canonicalize(value)`` when the C module takes the value whole — exact JSON
    types, no float, keys in the Basic Multilingual Plane, no lone surrogate, integers
    within ±(2**53 - 1), containers nested at most ``max_depth`` deep — else None (also
    when the module was not built). Never raises for the value: a quick test that a
    value has a canonical form, and that form."""
    return None if _c_canonicalize is None else _c_canonicalize(value, max_depth)


def canonicalize(value: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Objects and arrays may nest at most `max_depth` deep. Raises
    `CanonicalizationError` for NaN and infinities, integers beyond
    ±(2**53 - 1), lone surrogates, non-str object keys, unsupported types, and
    nesting beyond `max_depth`.
    """
    if _c_canonicalize is not None:
        # The C module writes the common case (no float, BMP keys, integers in range,
        # exact JSON types) and leaves the rest, errors included, to the code below.
        written = _c_canonicalize(value, max_depth)
        if written is not None:
            return written
    out: list[str] = []
    _encode(value, out, 1, max_depth)
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Strings are checked once, here, rather than one by one on the hot path;
        # only a failure pays for finding where the bad string is.
        raise CanonicalizationError(
            "string contains a lone surrogate, which UTF-8 cannot encode",
            _surrogate_path(value),
        ) from None


def _encode(value: object, out: list[str], depth: int, max_depth: int) -> None:
    # Dispatch on the exact type: bool subclasses int, and neither an IntEnum nor a
    # str subclass is guaranteed to serialise as its JSON look-alike.
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        out.append(scalar(value))
    elif type(value) is dict:
        _encode_object(value, out, depth, max_depth)
    elif type(value) is list:
        _encode_array(value, out, depth, max_depth)
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON type")


def _encode_object(obj: dict[Any, Any], out: list[str], depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise CanonicalizationError(f"nesting deeper than max_depth={max_depth}")
    keys: list[str] = []
    all_ascii = True
    for key in obj:
        if type(key) is not str:
            raise CanonicalizationError(
                f"object key {key!r} is {type(key).__name__}, not str", (_path_part(key),)
            )
        keys.append(key)
        all_ascii = all_ascii and key.isascii()
    # For ASCII keys code-point order is UTF-16 order, and plain sort is cheaper.
    keys.sort(key=None if all_ascii else _utf16_key)
    out.append("{")
    key = ""
    try:
        for index, key in enumerate(keys):
            if index:
                out.append(",")
            out.append(_quote(key))
            out.append(":")
            _encode(obj[key], out, depth + 1, max_depth)
    except CanonicalizationError as exc:
        exc.path = (key, *exc.path)
        raise
    out.append("}")


def _encode_array(items: list[Any], out: list[str], depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise CanonicalizationError(f"nesting deeper than max_depth={max_depth}")
    out.append("[")
    index = 0
    try:
        for index, item in enumerate(items):
            if index:
                out.append(",")
            _encode(item, out, depth + 1, max_depth)
    except CanonicalizationError as exc:
        exc.path = (index, *exc.path)
        raise
    out.append("]")


def _utf16_key(key: str) -> bytes:
    # RFC 8785 §3.2.3 orders names by UTF-16 code units, not code points: an astral
    # character (a surrogate pair, 0xD8xx) sorts before U+E000..U+FFFF.
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError:
        raise CanonicalizationError(
            "object key contains a lone surrogate, which UTF-8 cannot encode", (key,)
        ) from None


def _integer(value: int) -> str:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    raise CanonicalizationError(
        f"integer {value} is outside ±(2**53 - 1) and cannot be represented exactly"
    )


def _number(value: float) -> str:
    """Format a float as ECMAScript's Number.prototype.toString does."""
    if value.is_integer() and -_EXACT_FLOAT_BOUND < value < _EXACT_FLOAT_BOUND:
        return str(int(value))  # also turns -0.0 into "0"
    if not math.isfinite(value):
        raise CanonicalizationError(f"{value!r} is not a JSON number")
    # repr gives the shortest digits that round-trip, the digits ECMAScript uses;
    # only their layout differs.
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value == 0.<digits> * 10**n, in the notation of ECMA-262 Number::toString.
    n = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    n -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    fraction_part = "." + digits[1:] if k > 1 else ""
    return f"{sign}{digits[0]}{fraction_part}e{'+' if e >= 0 else '-'}{abs(e)}"


def _literal(value: bool | None) -> str:
    return "null" if value is None else "true" if value else "false"


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _quote,
    int: _integer,
    float: _number,
    bool: _literal,
    type(None): _literal,
}


def _surrogate_path(value: object) -> Path:
    """Find the first key or string holding a lone surrogate."""
    if type(value) is str:
        return () if _has_surrogate(value) else _NOT_FOUND
    if type(value) is list:
        for index, item in enumerate(value):
            found = _surrogate_path(item)
            if found is not _NOT_FOUND:
                return (index, *found)
    elif type(value) is dict:
        for key, item in value.items():
            if _has_surrogate(key):
                return (key,)
            found = _surrogate_path(item)
            if found is not _NOT_FOUND:
                return (key, *found)
    return _NOT_FOUND


_NOT_FOUND: Path = ("<not found>",)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _path_part(key: object) -> str | int:
    return key if isinstance(key, str | int) else repr(key)


def _show_path(path: Path) -> str:
    return "$" + "".join(f"[{part!r}]" for part in path)


def _double_if_large(text: str) -> int | float:
    # JCS writes an integral double such as 1e20 as its digits; beyond 2**53 those digits
    # can only have come from a double, so they are read back as one.
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)


def parse_canonical(data: bytes) -> Any:
    """Parse canonical bytes so that ``canonicalize`` gives the same bytes back (for bytes
    this module wrote). Raises ``ValueError`` for bytes that are not JSON."""
    try:
        return json.loads(data, parse_int=_double_if_large)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly the RFC 8785 form of the JSON value it holds.

    Most stored events hold no number that is not an integer of at most 15 digits and no
    character outside the Basic Multilingual Plane. For those, the C module (when it was
    built) confirms the form in one pass over the bytes; otherwise msgspec's encoder with
    sorted keys writes exactly JCS (the same string escapes, integers, and key order:
    code points and UTF-16 units order BMP keys alike), so a decode and re-encode that
    gives the same bytes back settles it. Anything else takes the full
    canonicalisation. Nesting is not limited here (ingest's limit is a policy, not part
    of the form), except by the interpreter's recursion limit: bytes nested too deeply
    to parse are not judged canonical.
    """
    if _first_unconfirmed is not None and _first_unconfirmed((data,), 0) == 1:
        return True
    return _is_canonical_in_python(data)


def _is_canonical_in_python(data: bytes) -> bool:
    return _round_trips(data) if _plain(data) else _is_canonical_slowly(data)


def first_not_canonical(entries: Sequence[bytes]) -> int | None:
    """The index of the first of ``entries`` that ``is_canonical`` refuses, or None.

    The same judgement as one ``is_canonical`` per entry, made for the whole run at
    once where it can be: by the C module when it was built (it confirms the common case
    in one pass over the bytes and leaves the rest to ``is_canonical``), else with the
    checks that choose between the quick and the full path made once for the run, and
    the quick path decoding, re-encoding and comparing entry after entry without coming
    back to Python in between."""
    if _first_unconfirmed is not None:
        at = _first_unconfirmed(entries, 0)
        while at < len(entries):  # the C module left this one to the Python path
            if not _is_canonical_in_python(entries[at]):
                return at
            at = _first_unconfirmed(entries, at + 1)
        return None
    if _plain(b"\n".join(entries)):
        try:
            if all(map(operator.eq, map(_SORTED.encode, map(_NO_FLOATS.decode, entries)),
                       entries)):
                return None
        except (_HasFloat, ValueError, RecursionError):
            pass  # the entry that raised is found, and judged, below
        check = _round_trips
    else:
        check = is_canonical
    return next((i for i, ok in enumerate(map(check, entries)) if not ok), None)


def _plain(data: bytes) -> bool:
    # No character outside the BMP, and no run of 16 digits anywhere (in a string too,
    # harmlessly): shorter integers are always exact, longer ones may be doubles. One
    # pass maps every digit to "0" and every lead byte of a 4-byte UTF-8 sequence (and
    # the bytes UTF-8 never uses) to 0xFF.
    marked = data.translate(_MARKS)
    return b"\xff" not in marked and _LONG_RUN not in marked


def _round_trips(data: bytes) -> bool:
    """``is_canonical`` for bytes that ``_plain`` admits."""
    try:
        return _SORTED.encode(_NO_FLOATS.decode(data)) == data
    except (_HasFloat, ValueError, RecursionError):  # msgspec.DecodeError is one
        return _is_canonical_slowly(data)  # which names nothing msgspec alone refuses


def _is_canonical_slowly(data: bytes) -> bool:
    try:
        value = json.loads(data, parse_int=_double_if_large)
        # Canonical form knows no depth limit (ingest's is a policy, checked there);
        # only the interpreter's own recursion limit bounds what is judged here.
        return canonicalize(value, max_depth=sys.maxsize) == data
    except (ValueError, RecursionError):  # bad JSON, lone surrogates, no JCS form
        return False


class _HasFloat(Exception):
    """A number with a fraction or an exponent: ECMAScript formatting applies."""


def _refuse_float(text: str) -> float:
    raise _HasFloat


_NO_FLOATS = msgspec.json.Decoder(float_hook=_refuse_float)
_SORTED = msgspec.json.Encoder(order="sorted")
_MARKS = bytes.maketrans(b"0123456789" + bytes(range(0xF0, 0x100)), b"0" * 10 + b"\xff" * 16)
_LONG_RUN = b"0" * 16
