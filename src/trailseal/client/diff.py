"""Field-level changes between two snapshots of a record, and redaction of secrets.

``compute_changes(before, after)`` turns two snapshots (dicts, dataclass instances,
pydantic models, SQLAlchemy ORM instances) into an event's ``changes``:
``{field: {"before": ..., "after": ...}}``. ``redact`` hides secrets in a JSON value such
as ``metadata`` or ``changes`` a caller wrote by hand.

Field paths
    Nested mappings become dotted paths (``address.city``); lists are compared as whole
    values. ``None`` and "absent" mean the same (the schema's null stands for absent), so
    a field that is ``None`` on one side and missing on the other is no change, and an
    empty mapping has no fields. Keys are not escaped: ``{"a.b": 1}`` and
    ``{"a": {"b": 1}}`` both give the path ``a.b``, and a reader cannot tell them apart.
    Values compare as JSON does: ``1`` equals ``1.0``, but not ``True`` nor ``"1"``.

Which keys are redacted
    A key is split into words at every character that is not a letter or a digit and at
    camelCase humps (``apiKey``, ``APIKey``). It matches a redaction name when its last
    word, or its last few words run together, lowercased, equal the name lowercased with
    everything but letters and digits removed. So ``api_key`` matches ``api_key``,
    ``API-KEY``, ``apiKey``, ``apikey``, ``X-Api-Key`` and ``stripe_api_key``; ``password``
    matches ``Password``, ``user_password`` and ``dbPassword``, but not ``mypassword`` (no
    word boundary) nor ``password_hint`` (the name must end the key). A key holding dots is
    a field path, and only its last segment counts: ``user.password`` matches,
    ``api.key`` does not match ``api_key``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any
from uuid import UUID

from pydantic import BaseModel

__all__ = [
    "DEFAULT_REDACT",
    "REDACTED",
    "compute_changes",
    "redact",
    "to_mapping",
]

REDACTED = "[REDACTED]"
DEFAULT_REDACT: frozenset[str] = frozenset({
    "password", "passwd", "passphrase", "password_hash", "password_digest",
    "secret", "secret_key", "client_secret", "private_key",
    "token", "access_token", "refresh_token", "api_key", "apikey",
    "authorization", "cookie",
    "ssn", "credit_card", "card_number", "cvv", "cvc",
})  # fmt: skip

_NOT_ALNUM = re.compile(r"[\W_]+")
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SUPPORTED = (
    "JSON types, mappings, lists, tuples, sets, dataclass instances, pydantic models, "
    "SQLAlchemy ORM instances, datetime, date, time, UUID, Decimal, Enum and bytes"
)


# -- redaction names ------------------------------------------------------------------


@lru_cache(maxsize=64)
def _normalised(names: frozenset[str]) -> frozenset[str]:
    return frozenset(n for n in (_NOT_ALNUM.sub("", name).lower() for name in names) if n)


def _redaction_set(names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        # A lone string would otherwise be taken as a set of one-letter names.
        raise TypeError("redaction names must be an iterable of names, not one string")
    return _normalised(names if isinstance(names, frozenset) else frozenset(names))


_KNOWN: dict[frozenset[str], dict[str, bool]] = {}
_KNOWN_KEYS = 4096  # keys remembered per set of names; past it, the rest are looked up


def _known(names: frozenset[str]) -> dict[str, bool]:
    """Whether each key met so far matches ``names`` (the same few field names come back
    on every event, so a key is split into words once)."""
    known = _KNOWN.get(names)
    if known is None:
        if len(_KNOWN) >= 64:
            _KNOWN.clear()
        known = _KNOWN[names] = {}
    return known


def _matches(key: str, names: frozenset[str], known: dict[str, bool] | None = None) -> bool:
    """Whether ``key`` names a secret of ``names`` (by its text alone, so an answer
    remembered for a key holds for any key equal to it); ``known`` is :func:`_known` of
    them, when the caller has it."""
    if known is None:
        known = _known(names)
    found = known.get(key)
    if found is None:
        found = _words_match(key, names)
        if len(known) < _KNOWN_KEYS:
            known[key] = found
    return found


def _words_match(key: str, names: frozenset[str]) -> bool:
    tail = ""
    last_segment = key.rpartition(".")[2]
    for word in reversed(_NOT_ALNUM.split(_HUMP.sub(" ", last_segment))):
        if word:
            tail = word.lower() + tail
            if tail in names:
                return True
    return False


# -- conversion to JSON ---------------------------------------------------------------


class _Unconvertible(TypeError):
    """A value with no JSON form; ``path`` is filled in, innermost first, on the way out."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.type_name = type(value).__qualname__
        self.path: list[str] = []

    def __str__(self) -> str:
        where = ".".join(reversed(self.path)) or "the value"
        return f"cannot convert {where} (a {self.type_name}) to JSON; supported: {_SUPPORTED}"


def _key(key: object) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    value = _jsonable(key)
    # json.dumps spells non-string keys the same way: 1 → "1", True → "true".
    return value if isinstance(value, str) else json.dumps(value)


def _members(items: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        name = _key(key)
        try:
            out[name] = _jsonable(value)
        except _Unconvertible as exc:
            exc.path.append(name)
            raise
    return out


def _items(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for index, value in enumerate(values):
        try:
            out.append(_jsonable(value))
        except _Unconvertible as exc:
            exc.path.append(str(index))
            raise
    return out


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    # JSON has no NaN or infinities; these are the spellings of json.dumps and JavaScript.
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _jsonable(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return _float(value)
    if kind is dict:
        return _members(value.items())
    if kind is list or kind is tuple:
        return _items(value)
    # Enum before int and str: IntEnum and StrEnum members are ints and strs too.
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return _members(value.items())
    if isinstance(value, list | tuple):
        return _items(value)
    if isinstance(value, set | frozenset):
        # Sorted so that equal sets give equal lists whatever their iteration order.
        return sorted(_items(value), key=lambda item: json.dumps(item, sort_keys=True))
    record = _record(value)
    if record is None:
        raise _Unconvertible(value)
    return record


def _record(obj: object) -> dict[str, Any] | None:
    """The fields of a dataclass instance, pydantic model or ORM instance, else None."""
    if isinstance(obj, type):
        return None
    if dataclasses.is_dataclass(obj):
        return _members((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, BaseModel):
        dumped = obj.model_dump(mode="json")
        return dumped if isinstance(dumped, dict) else None
    if hasattr(obj, "__mapper__") or hasattr(obj, "_sa_instance_state"):
        return _orm_columns(obj)
    return None


def _orm_columns(obj: object) -> dict[str, Any] | None:
    # Imported here so that SQLAlchemy stays optional.
    from sqlalchemy import inspect
    from sqlalchemy.exc import NoInspectionAvailable

    try:
        mapper = inspect(obj).mapper
    except NoInspectionAvailable:
        return None
    return _members((attr.key, getattr(obj, attr.key)) for attr in mapper.column_attrs)


def to_mapping(obj: object) -> dict[str, Any]:
    """A plain dict of JSON values holding the fields of ``obj``.

    ``obj`` is a mapping, a dataclass instance, a pydantic v2 model (``model_dump(mode=
    "json")``), a SQLAlchemy ORM instance (its column attributes, by attribute name;
    relationships are left out) or ``None`` (``{}``). Values are converted: datetime,
    date and time to ISO 8601, UUID and Decimal to strings, Enum members to their
    values, bytes to base64, tuples to lists, sets to lists sorted by their JSON text,
    NaN and infinities to ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, and nested records
    the same way. ORM attributes are read as the application would read them, so an
    expired or deferred one is loaded through its session.

    Raises ``TypeError`` for any other ``obj``, and for a value with no JSON form (the
    message names its path).
    """
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return _members(obj.items())
    record = _record(obj)
    if record is None:
        raise TypeError(
            f"to_mapping() takes a mapping, a dataclass instance, a pydantic model, a "
            f"SQLAlchemy ORM instance or None, not {type(obj).__qualname__}"
        )
    return record


# -- comparison -----------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    # Python's == finds most differences at C speed; the walk only rules out the
    # equalities JSON does not have (True == 1).
    return a is b or (a == b and _same_json(a, b))


def _same_json(a: Any, b: Any) -> bool:
    kind = type(a)
    if kind is bool or type(b) is bool:
        return kind is type(b)
    if kind is dict:
        return all(_same_json(value, b[key]) for key, value in a.items())
    if kind is list:
        return all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return True


def _compare(
    before: dict[str, Any],
    after: dict[str, Any],
    prefix: str,
    names: frozenset[str],
    out: dict[str, dict[str, Any]],
) -> None:
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if _same(old, new):
            continue
        path = prefix + key
        if _matches(key, names):
            out[path] = {"before": REDACTED, "after": REDACTED}
            continue
        old_map = old if isinstance(old, dict) else None
        new_map = new if isinstance(new, dict) else None
        if old_map is None and new_map is None:
            out[path] = {"before": _redact(old, names), "after": _redact(new, names)}
            continue
        # At least one side is a mapping: its fields are compared one by one (with absent
        # ones if the other side is not a mapping), and a scalar or list on the other side
        # is reported here as removed or added.
        _compare(old_map or {}, new_map or {}, path + ".", names, out)
        if old_map is None and old is not None:
            out[path] = {"before": _redact(old, names), "after": None}
        if new_map is None and new is not None:
            out[path] = {"before": None, "after": _redact(new, names)}


def compute_changes(
    before: object, after: object, *, redact: Iterable[str] = DEFAULT_REDACT
) -> dict[str, dict[str, Any]]:
    """The event ``changes`` that take ``before`` to ``after``, sorted by field path.

    Both sides go through ``to_mapping``. Nested mappings become dotted paths, lists are
    compared whole, a field on one side only has ``None`` on the other, and equal fields
    are left out. A field whose key matches ``redact`` (see the module docstring; the
    names given replace the defaults, so extend with ``DEFAULT_REDACT | {"pin"}``) is
    compared whole: when it changed both sides read ``"[REDACTED]"``, so the event shows
    *that* it changed and never what it was; when it did not, it is left out. Keys
    matching ``redact`` inside list values are redacted too.
    """
    names = _redaction_set(redact)
    changes: dict[str, dict[str, Any]] = {}
    _compare(to_mapping(before), to_mapping(after), "", names, changes)
    return dict(sorted(changes.items()))


# -- redaction ------------------------------------------------------------------------

_CHANGE_SIDES = frozenset({"before", "after"})


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _redact(value: Any, names: frozenset[str], known: dict[str, bool] | None = None) -> Any:
    # Exact type checks first: this runs on the caller's thread for every event, and an
    # isinstance() against an ABC costs several times more.
    kind = type(value)
    if kind in _SCALARS:
        return value
    if known is None:
        known = _known(names)
    if kind is dict or isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            # Here only a plain str key can name a secret (a str subclass, as a StrEnum's
            # members are, is left as it was). The lookup is _matches's own, inline on this
            # path of every event.
            hit = False
            if type(key) is str:
                found = known.get(key)
                hit = _matches(key, names, known) if found is None else found
            if not hit:
                out[key] = item if type(item) in _SCALARS else _redact(item, names, known)
            elif isinstance(item, Mapping) and item and item.keys() <= _CHANGE_SIDES:
                # A field of ``changes``: keep the {before, after} shape the schema requires.
                out[key] = {"before": REDACTED, "after": REDACTED}
            else:
                out[key] = REDACTED
        return out
    if kind is list or isinstance(value, list | tuple):
        return [_redact(item, names, known) for item in value]
    return value


def redact(value: Any, names: Iterable[str] = DEFAULT_REDACT) -> Any:
    """A copy of the JSON ``value`` in which every object member whose key matches
    ``names`` (see the module docstring), at any depth, reads ``"[REDACTED]"``.

    Made for ``metadata`` and for ``changes`` a caller wrote by hand: a matching member
    whose value is a change (a mapping with only ``before`` and ``after``) becomes
    ``{"before": "[REDACTED]", "after": "[REDACTED]"}``, so a field path whose last
    segment matches (``user.password``) is hidden on both sides and stays a valid change.
    The input is not changed; containers are copied, scalars shared. Values are not
    converted to JSON: pass them through ``to_mapping`` first if they may not be.
    """
    return _redact(value, _redaction_set(names))
