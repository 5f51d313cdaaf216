"""Field-level changes and redaction (trailseal.client.diff)."""

import enum
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from trailseal.client import diff
from trailseal.client.diff import (
    DEFAULT_REDACT,
    REDACTED,
    compute_changes,
    redact,
    to_mapping,
)
from trailseal.model import EventV1

R = {"before": REDACTED, "after": REDACTED}


# -- compute_changes on plain dicts ----------------------------------------------------

CHANGES = [
    (
        "flat",
        {"role": "viewer", "name": "Ann"},
        {"role": "admin", "name": "Ann"},
        {"role": {"before": "viewer", "after": "admin"}},
    ),
    ("added", {}, {"role": "admin"}, {"role": {"before": None, "after": "admin"}}),
    ("removed", {"role": "admin"}, {}, {"role": {"before": "admin", "after": None}}),
    (
        "nested dotted path",
        {"address": {"city": "Oslo", "zip": "0150"}},
        {"address": {"city": "Bergen", "zip": "0150"}},
        {"address.city": {"before": "Oslo", "after": "Bergen"}},
    ),
    (
        "deeply nested",
        {"a": {"b": {"c": 1}}},
        {"a": {"b": {"c": 2}}},
        {"a.b.c": {"before": 1, "after": 2}},
    ),
    (
        "nested mapping added",
        {},
        {"address": {"city": "Oslo"}},
        {"address.city": {"before": None, "after": "Oslo"}},
    ),
    (
        "nested mapping removed",
        {"address": {"city": "Oslo"}},
        {"address": None},
        {"address.city": {"before": "Oslo", "after": None}},
    ),
    (
        "scalar becomes mapping",
        {"address": "Main St 1"},
        {"address": {"city": "Oslo"}},
        {
            "address": {"before": "Main St 1", "after": None},
            "address.city": {"before": None, "after": "Oslo"},
        },
    ),
    (
        "mapping becomes scalar",
        {"address": {"city": "Oslo"}},
        {"address": "Main St 1"},
        {
            "address": {"before": None, "after": "Main St 1"},
            "address.city": {"before": "Oslo", "after": None},
        },
    ),
    (
        "list compared whole",
        {"tags": ["a", "b"]},
        {"tags": ["a", "c"]},
        {"tags": {"before": ["a", "b"], "after": ["a", "c"]}},
    ),
    (
        "list of mappings whole",
        {"items": [{"n": 1}]},
        {"items": [{"n": 2}]},
        {"items": {"before": [{"n": 1}], "after": [{"n": 2}]}},
    ),
    (
        "equal fields omitted",
        {"a": 1, "b": [1, 2], "c": {"d": "x"}},
        {"a": 1, "b": [1, 2], "c": {"d": "x"}},
        {},
    ),
    ("int to str", {"n": 1}, {"n": "1"}, {"n": {"before": 1, "after": "1"}}),
    ("int to bool", {"n": 1}, {"n": True}, {"n": {"before": 1, "after": True}}),
    ("bool inside list", {"n": [0]}, {"n": [False]}, {"n": {"before": [0], "after": [False]}}),
    ("int equals float", {"n": 1}, {"n": 1.0}, {}),
    ("value to None", {"n": 1}, {"n": None}, {"n": {"before": 1, "after": None}}),
    ("None to value", {"n": None}, {"n": 0}, {"n": {"before": None, "after": 0}}),
    ("None equals absent", {"n": None}, {}, {}),
    ("empty mapping equals absent", {"address": {}}, {}, {}),
    ("dotted key kept as is", {"a.b": 1}, {"a.b": 2}, {"a.b": {"before": 1, "after": 2}}),
    ("both sides None", None, None, {}),
    ("before None", None, {"x": 1}, {"x": {"before": None, "after": 1}}),
    ("redacted change", {"password": "old"}, {"password": "new"}, {"password": R}),
    (
        "redacted unchanged omitted",
        {"password": "same", "n": 1},
        {"password": "same", "n": 2},
        {"n": {"before": 1, "after": 2}},
    ),
    ("redacted set", {}, {"api_key": "k"}, {"api_key": R}),
    (
        "redacted nested",
        {"db": {"password": "a", "host": "h"}},
        {"db": {"password": "b", "host": "h"}},
        {"db.password": R},
    ),
    (
        "redacted mapping compared whole",
        {"secret": {"a": 1}},
        {"secret": {"a": 2, "b": 3}},
        {"secret": R},
    ),
    (
        "redacted inside a list",
        {"users": [{"name": "a", "token": "t1"}]},
        {"users": [{"name": "a", "token": "t2"}]},
        {
            "users": {
                "before": [{"name": "a", "token": REDACTED}],
                "after": [{"name": "a", "token": REDACTED}],
            }
        },
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [case[1:] for case in CHANGES],
    ids=[case[0] for case in CHANGES],
)
def test_compute_changes(before: Any, after: Any, expected: dict[str, Any]) -> None:
    assert compute_changes(before, after) == expected


def test_keys_are_sorted_and_inputs_untouched() -> None:
    before = {"z": 1, "a": {"m": 1, "b": 1}, "k": [{"password": "x"}]}
    after = {"z": 2, "a": {"m": 2, "b": 2}, "k": [{"password": "y"}]}
    snapshot = json.dumps([before, after])
    changes = compute_changes(before, after)
    assert list(changes) == ["a.b", "a.m", "k", "z"]
    assert json.dumps([before, after]) == snapshot


def test_changes_validate_against_the_event_schema() -> None:
    changes = compute_changes(
        {"role": "viewer", "password": "a", "address": {"city": "Oslo"}},
        {"role": "admin", "password": "b", "address": {"city": "Bergen"}, "tags": ["x"]},
    )
    event = EventV1.model_validate(
        {
            "actor": {"type": "user", "id": "u1"},
            "action": "user.profile.updated",
            "target": {"type": "user", "id": "u1"},
            "changes": changes,
        }
    )
    assert set(event.changes) == {"address.city", "password", "role", "tags"}


# -- input types ------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Address:
    city: str
    zip: str = "0150"


@dataclass
class UserRecord:
    name: str
    address: Address
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class AddressModel(BaseModel):
    city: str


class UserModel(BaseModel):
    name: str
    joined: date
    address: AddressModel
    color: Color = Color.RED


def test_dataclass_input() -> None:
    before = UserRecord("Ann", Address("Oslo"), ("a",))
    after = UserRecord("Ann", Address("Bergen"), ("a", "b"), {"since": date(2024, 1, 2)})
    assert to_mapping(before) == {
        "name": "Ann",
        "address": {"city": "Oslo", "zip": "0150"},
        "tags": ["a"],
        "extra": {},
    }
    assert compute_changes(before, after) == {
        "address.city": {"before": "Oslo", "after": "Bergen"},
        "extra.since": {"before": None, "after": "2024-01-02"},
        "tags": {"before": ["a"], "after": ["a", "b"]},
    }


def test_pydantic_input() -> None:
    before = UserModel(name="Ann", joined=date(2024, 1, 2), address=AddressModel(city="Oslo"))
    after = before.model_copy(update={"color": Color.BLUE, "address": AddressModel(city="X")})
    assert to_mapping(before) == {
        "name": "Ann",
        "joined": "2024-01-02",
        "address": {"city": "Oslo"},
        "color": "red",
    }
    assert compute_changes(before, after) == {
        "address.city": {"before": "Oslo", "after": "X"},
        "color": {"before": "red", "after": "blue"},
    }


def _orm_user_class() -> Any:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

    class Base(DeclarativeBase):
        pass

    class Team(Base):
        __tablename__ = "teams"
        id: Mapped[int] = mapped_column(primary_key=True)

    class User(Base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str]
        display_name: Mapped[str | None] = mapped_column("name")
        password_hash: Mapped[str]
        created_at: Mapped[datetime]
        balance: Mapped[Decimal] = mapped_column(sqlalchemy.Numeric(10, 2))
        team_id: Mapped[int | None] = mapped_column(sqlalchemy.ForeignKey("teams.id"))
        team: Mapped[Team | None] = relationship()

    return User


def test_sqlalchemy_input_reads_column_attributes_by_attribute_name() -> None:
    user_class = _orm_user_class()
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    user = user_class(
        id=7,
        email="a@example.com",
        display_name="Ann",
        password_hash="h1",
        created_at=created,
        balance=Decimal("1.50"),
    )
    before = to_mapping(user)
    assert before == {
        "id": 7,
        "email": "a@example.com",
        "display_name": "Ann",
        "password_hash": "h1",
        "created_at": "2024-01-02T03:04:05+00:00",
        "balance": "1.50",
        "team_id": None,
    }
    user.email = "b@example.com"
    user.password_hash = "h2"
    assert compute_changes(before, user) == {
        "email": {"before": "a@example.com", "after": "b@example.com"},
        "password_hash": R,
    }


def test_sqlalchemy_mapped_class_is_not_a_record() -> None:
    with pytest.raises(TypeError, match=r"to_mapping\(\) takes a mapping"):
        to_mapping(_orm_user_class())


def test_sqlalchemy_is_imported_only_for_orm_objects() -> None:
    code = (
        "import sys\n"
        "from trailseal.client.diff import compute_changes\n"
        "compute_changes({'a': 1}, {'a': 2})\n"
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _Unknown:
    pass


UID = uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8057")
CONVERSIONS = [
    (
        "aware datetime",
        datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        "2024-01-02T03:04:05.006000+00:00",
    ),
    ("naive datetime", datetime(2024, 1, 2, 3, 4), "2024-01-02T03:04:00"),
    ("date", date(2024, 1, 2), "2024-01-02"),
    ("time", time(9, 30), "09:30:00"),
    ("uuid", UID, "01890a5d-ac96-774b-bcce-b302099a8057"),
    ("decimal", Decimal("12.50"), "12.50"),
    ("enum", Color.BLUE, "blue"),
    ("int enum", Level.HIGH, 2),
    ("bytes", b"\x00\xffhi", "AP9oaQ=="),
    ("bytearray", bytearray(b"hi"), "aGk="),
    ("tuple", (1, "a"), [1, "a"]),
    ("set sorted", {3, 1, 2}, [1, 2, 3]),
    ("frozenset of str", frozenset({"b", "a"}), ["a", "b"]),
    ("nan", float("nan"), "NaN"),
    ("infinity", float("-inf"), "-Infinity"),
    ("nested dataclass", Address("Oslo"), {"city": "Oslo", "zip": "0150"}),
    ("nested model", AddressModel(city="Oslo"), {"city": "Oslo"}),
    (
        "list of records",
        [Address("A"), {"d": date(2024, 1, 2)}],
        [{"city": "A", "zip": "0150"}, {"d": "2024-01-02"}],
    ),
    (
        "non-string keys",
        {1: "a", 2.5: "b", None: "c", Color.RED: "d", UID: "e"},
        {"1": "a", "2.5": "b", "null": "c", "red": "d", str(UID): "e"},
    ),
    ("bool keys", {True: 1, False: 0}, {"true": 1, "false": 0}),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [case[1:] for case in CONVERSIONS],
    ids=[case[0] for case in CONVERSIONS],
)
def test_values_are_converted_to_json(value: Any, expected: Any) -> None:
    converted = to_mapping({"v": value})["v"]
    assert converted == expected
    assert json.loads(json.dumps(converted)) == converted


@pytest.mark.parametrize(
    "obj",
    [42, "text", ["a"], ("a", 1), object(), _Unknown(), Address, UserModel],
    ids=[
        "int",
        "str",
        "list",
        "tuple",
        "object",
        "class instance",
        "dataclass class",
        "model class",
    ],
)
def test_unsupported_objects_raise_type_error(obj: object) -> None:
    with pytest.raises(TypeError, match="to_mapping\\(\\) takes a mapping"):
        to_mapping(obj)


def test_unsupported_nested_value_names_its_path() -> None:
    with pytest.raises(TypeError, match=r"cannot convert a\.b\.1 \(a timedelta\) to JSON"):
        to_mapping({"a": {"b": [1, timedelta(seconds=1)]}})
    with pytest.raises(TypeError, match=r"extra\.x \(a _Unknown\)"):
        compute_changes(None, UserRecord("A", Address("B"), extra={"x": _Unknown()}))


# -- redaction --------------------------------------------------------------------------


def _variants(name: str) -> list[str]:
    words = name.split("_")
    camel = words[0] + "".join(w.capitalize() for w in words[1:])
    return [
        name,
        name.upper(),
        name.capitalize(),
        "-".join(words).upper(),
        "-".join(w.capitalize() for w in words),
        camel,
        "".join(words),
        f"user_{name}",
        f"user-{'-'.join(words)}",
        f"user{camel[0].upper()}{camel[1:]}",
        f"db.{name}",
    ]


@pytest.mark.parametrize("name", sorted(DEFAULT_REDACT))
def test_every_default_name_is_redacted_in_its_variants(name: str) -> None:
    for key in _variants(name):
        assert compute_changes({key: "a"}, {key: "b"}) == {key: R}, key
        assert redact({key: "a", "keep": 1}) == {key: REDACTED, "keep": 1}, key


@pytest.mark.parametrize(
    "key",
    [
        "Password",
        "user_password",
        "apiKey",
        "API-KEY",
        "X-Api-Key",
        "stripe_secret",
        "dbPassword",
        "OAuthToken",
        "Set-Cookie",
        "APIKey",
        "credit-card",
        "CardNumber",
    ],
)
def test_named_variants_are_redacted(key: str) -> None:
    assert redact({key: "v"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "passwords",
        "password_hint",
        "mypassword",
        "tokens",
        "max_tokens",
        "keyboard",
        "api.key",
        "secretary",
        "cookies_accepted",
        "lesson",
        "role",
    ],
)
def test_similar_names_are_not_redacted(key: str) -> None:
    assert redact({key: "v"}) == {key: "v"}


def test_redaction_at_any_depth_copies_and_keeps_input() -> None:
    value = {
        "request": {"headers": {"Authorization": "Bearer x", "Accept": "*/*"}},
        "attempts": [{"password": "p", "n": 1}, ["x", {"apiKey": "k"}]],
        "note": "password is not redacted in values",
    }
    snapshot = json.dumps(value)
    assert redact(value) == {
        "request": {"headers": {"Authorization": REDACTED, "Accept": "*/*"}},
        "attempts": [{"password": REDACTED, "n": 1}, ["x", {"apiKey": REDACTED}]],
        "note": "password is not redacted in values",
    }
    assert json.dumps(value) == snapshot
    assert redact(42) == 42 and redact(None) is None


def test_redact_keeps_the_shape_of_explicit_changes() -> None:
    changes = {
        "user.password": {"before": "old", "after": "new"},
        "token": {"after": "t"},
        "settings": {"before": {"theme": "dark"}, "after": {"theme": "dark", "api_key": "k"}},
        "role": {"before": "viewer", "after": "admin"},
    }
    assert redact(changes) == {
        "user.password": R,
        "token": R,
        "settings": {"before": {"theme": "dark"}, "after": {"theme": "dark", "api_key": REDACTED}},
        "role": {"before": "viewer", "after": "admin"},
    }


def test_custom_redaction_lists_replace_the_defaults() -> None:
    before = {"password": "a", "pin": "1", "Home-Address": "x"}
    after = {"password": "b", "pin": "2", "Home-Address": "y"}
    assert compute_changes(before, after, redact=["PIN", "home_address"]) == {
        "Home-Address": R,
        "password": {"before": "a", "after": "b"},
        "pin": R,
    }
    assert compute_changes(before, after, redact=DEFAULT_REDACT | {"pin"})["pin"] == R
    assert compute_changes(before, after, redact=()) == {
        k: {"before": before[k], "after": after[k]} for k in sorted(before)
    }
    assert redact(before, {"pin"}) == {"password": "a", "pin": REDACTED, "Home-Address": "x"}


def test_remembered_keys_answer_per_list_of_names_and_past_the_limit(monkeypatch) -> None:
    # Which keys match is remembered per list of names: the same key is a secret under
    # one list and not under another, and past the remembered limit keys are still
    # looked up, not taken as plain.
    assert redact({"pin": "1"}, {"pin"}) == {"pin": REDACTED}
    assert redact({"pin": "1"}) == {"pin": "1"}
    assert redact({"pin": "1"}, {"pin"}) == {"pin": REDACTED}
    # A key of another type equal to a secret's name (a str subclass, as a StrEnum's
    # members are) is not what is remembered for that name.
    class Name(str):
        pass

    monkeypatch.setattr(diff, "_KNOWN", {})
    assert redact({Name("password"): "p"}) == {"password": "p"}
    assert redact({"password": "p"}) == {"password": REDACTED}
    monkeypatch.setattr(diff, "_KNOWN", {})
    monkeypatch.setattr(diff, "_KNOWN_KEYS", 2)
    many = {f"field_{i}": i for i in range(5)} | {"api_key": "k", "user_password": "p"}
    assert redact(many) == {**many, "api_key": REDACTED, "user_password": REDACTED}
    assert len(diff._KNOWN[diff._redaction_set(DEFAULT_REDACT)]) == 2


def test_one_string_is_not_a_list_of_names() -> None:
    with pytest.raises(TypeError, match="not one string"):
        compute_changes({}, {}, redact="password")
    with pytest.raises(TypeError, match="not one string"):
        redact({}, "password")


# -- properties -------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_extras = (
    st.datetimes()
    | st.dates()
    | st.uuids()
    | st.decimals()
    | st.binary(max_size=4)
    | st.sampled_from(Color)
    | st.frozensets(st.integers(), max_size=3)
    | st.tuples(st.integers(), st.text(max_size=2))
)
_anything = st.recursive(
    _scalars | _extras,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), _anything, max_size=6))
def test_a_record_has_no_changes_from_itself(record: dict[str, Any]) -> None:
    assert compute_changes(record, record) == {}


def _plain_key(key: str) -> bool:
    return redact({key: 0}) == {key: 0}


_keys = st.text(alphabet="abcdeAB_-0", min_size=1, max_size=3).filter(_plain_key)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=10,
)
_records = st.dictionaries(_keys, _json, max_size=5)


@given(_records)
def test_redaction_of_json_without_secrets_is_an_equal_copy(record: dict[str, Any]) -> None:
    snapshot = json.dumps(record)
    copied = redact(record)
    assert json.dumps(copied) == snapshot and copied is not record
    assert redact([record, record]) == [record, record]
    assert json.dumps(record) == snapshot


def _apply(record: dict[str, Any], changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result = json.loads(json.dumps(record))
    for path, change in changes.items():
        *parents, last = path.split(".")
        node = result
        for name in parents:
            if not isinstance(node.get(name), dict):
                if change["after"] is None:
                    break  # nothing to remove below a scalar or an absent field
                node[name] = {}
            node = node[name]
        else:
            node[last] = change["after"]
    return result


def _exact(value: Any) -> Any:
    """Lists are compared whole, so inside them only True == 1 has to be told apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


def _canonical(value: Any) -> Any:
    """A record in which None and {} mean absent (as in changes) and 1 equals 1.0."""
    if isinstance(value, dict):
        members = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in members.items() if v is not None} or None
    return _exact(value)


@given(_records, _records)
def test_applying_the_changes_to_before_gives_after(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    changes = compute_changes(before, after)
    assert _canonical(_apply(before, changes)) == _canonical(after)
    assert all(_exact(c["before"]) != _exact(c["after"]) for c in changes.values())
