"""pytest plugin: capture what the code under test records, and assert on it.

Installed with the SDK (entry point ``pytest11``), so an application's own tests can say::

    def test_promote(audit_log, http):
        http.put("/users/42/role", json={"role": "admin"}, headers={"X-User-Id": "7"})
        audit_log.assert_audited(action="user.role.updated", target=("user", "42"),
                                 changes={"role": {"before": "viewer", "after": "admin"}})

Fixtures:

* ``audit_log``: an ``AuditLog`` holding every event any ``AuditClient`` records during
  the test, from any thread (a server thread, a thread pool). While it is active, the
  module-level ``assert_audited`` and ``assert_not_audited`` check it too, for helpers
  that do not receive the fixture.
* ``audit_client``: an ``AuditClient`` to hand to the application under test. It is strict
  (bad arguments raise ``InvalidEvent`` in the test instead of being logged) and never
  sends anything: its sender is stopped, it points at a closed local port, and its spool
  lives in ``tmp_path``. ``flush()`` returns False at once; ``close()`` returns at once.

Criteria, shared by ``assert_audited``, ``assert_not_audited`` and ``filter`` (all
optional, combined with AND):

* ``action``: the exact action.
* ``actor``, ``target``: ``("type", "id")``, ``("type", "id", "name")`` or a mapping; the
  fields given must be equal (ids compare as strings), others are not checked.
* ``outcome``: ``"success"``, ``"failure"``, or a mapping such as
  ``{"status": "failure", "error_code": "bad_password"}``, checked the same way.
* ``changes``: field names that must have changed (``["role"]``), or a mapping of field to
  ``{"before": ..., "after": ...}`` (either side may be left out). Values are compared as
  recorded: converted to JSON (a tuple is a list, a datetime an ISO 8601 string), and
  redacted fields read ``"[REDACTED]"``.

Importing this module imports only the SDK itself and pytest; it defines no autouse
fixture, so a test suite that does not ask for these fixtures is not affected.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trailseal.client import core

__all__ = ["AuditLog", "assert_audited", "assert_not_audited"]

RefLike = Mapping[str, object] | Sequence[object]
OutcomeLike = str | Mapping[str, object]
ChangesLike = Mapping[str, Mapping[str, object]] | Iterable[str]

UNREACHABLE_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing leaves
MAX_LISTED = 20  # events listed in a failure message
MAX_VALUE = 40  # characters of a value shown in a failure message

_CHANGE_SIDES = frozenset({"before", "after"})


# -- criteria -------------------------------------------------------------------------


def _expected_ref(value: RefLike, what: str) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    if isinstance(value, Sequence) and not isinstance(value, str) and 2 <= len(value) <= 3:
        return dict(zip(("type", "id", "name"), (str(v) for v in value), strict=False))
    raise TypeError(f"{what} must be (type, id), (type, id, name) or a mapping, not {value!r}")


def _expected_outcome(value: OutcomeLike) -> dict[str, object]:
    return {"status": value} if isinstance(value, str) else dict(value)


def _expected_changes(value: ChangesLike) -> dict[str, dict[str, object]]:
    if isinstance(value, str):
        return {value: {}}
    if not isinstance(value, Mapping):
        return {str(field): {} for field in value}
    expected: dict[str, dict[str, object]] = {}
    for field, sides in value.items():
        if not isinstance(sides, Mapping) or not sides.keys() <= _CHANGE_SIDES:
            raise TypeError(
                f"changes[{field!r}] must be a mapping with 'before' and/or 'after', "
                f"not {sides!r}; to check only that it changed, pass field names"
            )
        expected[field] = dict(sides)
    return expected


def _subset(expected: Mapping[str, object], actual: object) -> bool:
    if not isinstance(actual, Mapping):
        return False
    return all(key in actual and actual[key] == value for key, value in expected.items())


@dataclass(frozen=True)
class _Criteria:
    """What an event must be like, checked once when written and then for each event."""

    given: dict[str, object]  # as the caller wrote them, for messages
    action: str | None
    actor: dict[str, str] | None
    target: dict[str, str] | None
    outcome: dict[str, object] | None
    changes: dict[str, dict[str, object]] | None

    @classmethod
    def of(
        cls,
        action: str | None,
        target: RefLike | None,
        actor: RefLike | None,
        outcome: OutcomeLike | None,
        changes: ChangesLike | None,
    ) -> _Criteria:
        written: dict[str, object] = {
            "action": action, "target": target, "actor": actor, "outcome": outcome,
            "changes": changes,
        }
        given = {name: value for name, value in written.items() if value is not None}
        return cls(
            given=given,
            action=action,
            actor=None if actor is None else _expected_ref(actor, "actor"),
            target=None if target is None else _expected_ref(target, "target"),
            outcome=None if outcome is None else _expected_outcome(outcome),
            changes=None if changes is None else _expected_changes(changes),
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.action is not None and event.get("action") != self.action:
            return False
        if self.actor is not None and not _subset(self.actor, event.get("actor")):
            return False
        if self.target is not None and not _subset(self.target, event.get("target")):
            return False
        if self.outcome is not None and not _subset(self.outcome, event.get("outcome")):
            return False
        if self.changes is not None:
            recorded = event.get("changes") or {}
            for field, sides in self.changes.items():
                if field not in recorded or not _subset(sides, recorded[field]):
                    return False
        return True

    def describe(self) -> str:
        if not self.given:
            return "any audit event"
        return ", ".join(f"{name}={value!r}" for name, value in self.given.items())


# -- failure messages -----------------------------------------------------------------


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _ref_text(ref: object) -> str:
    if not isinstance(ref, Mapping):
        return "?"
    return f"{ref.get('type')}:{ref.get('id')}"


def _summary(event: Mapping[str, Any]) -> str:
    """One line for an event: action, actor, target, outcome, changes."""
    outcome = event.get("outcome") or {}
    status = str(outcome.get("status", "success"))
    if outcome.get("error_code"):
        status += f"({outcome['error_code']})"
    parts = [
        str(event.get("action")),
        f"actor={_ref_text(event.get('actor'))}",
        f"target={_ref_text(event.get('target'))}",
        status,
    ]
    changes = event.get("changes") or {}
    if changes:
        shown = ", ".join(
            f"{field}: {_short(change.get('before'))} -> {_short(change.get('after'))}"
            for field, change in changes.items()
        )
        parts.append(f"changes={{{shown}}}")
    return "  ".join(parts)


def _listing(events: list[dict[str, Any]], criteria: _Criteria) -> str:
    if not events:
        return "no audit events were recorded"
    lines = [f"recorded ({len(events)}, * = matches):"]
    for event in events[:MAX_LISTED]:
        mark = "*" if criteria.matches(event) else " "
        lines.append(f"  {mark} {_summary(event)}")
    if len(events) > MAX_LISTED:
        lines.append(f"    ... and {len(events) - MAX_LISTED} more")
    return "\n".join(lines)


# -- the capture ----------------------------------------------------------------------


class AuditLog:
    """The events recorded by every ``AuditClient`` in this process while capturing.

    Thread-safe: events recorded on other threads (a server, a thread pool) are kept as
    they arrive. Capturing starts when ``capture()`` is entered (the ``audit_log``
    fixture does it for the test) and stops when it is left.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def _observe(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    @contextmanager
    def capture(self) -> Iterator[AuditLog]:
        """Capture events while the block runs; the module-level helpers check this log."""
        observe = self._observe
        core.observers.append(observe)
        _active.append(self)
        try:
            yield self
        finally:
            _active.remove(self)
            core.observers.remove(observe)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events captured so far, oldest first (a copy)."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget the events captured so far (after a test's setup, say)."""
        with self._lock:
            self._events.clear()

    def filter(
        self,
        action: str | None = None,
        target: RefLike | None = None,
        actor: RefLike | None = None,
        outcome: OutcomeLike | None = None,
        changes: ChangesLike | None = None,
    ) -> list[dict[str, Any]]:
        """The captured events that match every criterion given, oldest first."""
        criteria = _Criteria.of(action, target, actor, outcome, changes)
        return [event for event in self.events if criteria.matches(event)]

    def assert_audited(
        self,
        action: str | None = None,
        target: RefLike | None = None,
        actor: RefLike | None = None,
        outcome: OutcomeLike | None = None,
        changes: ChangesLike | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        """The last captured event matching every criterion given.

        Raises ``AssertionError``, listing what was recorded, when none matches, or when
        ``count`` is given and a different number match.
        """
        __tracebackhide__ = True
        if count is not None and count < 1:
            raise ValueError("count must be 1 or more; use assert_not_audited for none")
        criteria = _Criteria.of(action, target, actor, outcome, changes)
        events = self.events
        found = [event for event in events if criteria.matches(event)]
        if count is not None and len(found) != count:
            raise AssertionError(
                f"expected {count} audit event(s) with {criteria.describe()}, "
                f"found {len(found)}\n{_listing(events, criteria)}"
            )
        if not found:
            raise AssertionError(
                f"no audit event with {criteria.describe()}\n{_listing(events, criteria)}"
            )
        return found[-1]

    def assert_not_audited(
        self,
        action: str | None = None,
        target: RefLike | None = None,
        actor: RefLike | None = None,
        outcome: OutcomeLike | None = None,
        changes: ChangesLike | None = None,
    ) -> None:
        """Raises ``AssertionError``, listing what was recorded, when any captured event
        matches every criterion given."""
        __tracebackhide__ = True
        criteria = _Criteria.of(action, target, actor, outcome, changes)
        events = self.events
        found = sum(1 for event in events if criteria.matches(event))
        if found:
            raise AssertionError(
                f"expected no audit event with {criteria.describe()}, found {found}\n"
                f"{_listing(events, criteria)}"
            )


_active: list[AuditLog] = []  # the captures in progress, innermost last


def _current() -> AuditLog:
    if not _active:
        raise RuntimeError(
            "no audit capture is active: request the audit_log fixture in the test "
            "(def test_x(audit_log): ...) before calling assert_audited()"
        )
    return _active[-1]


def assert_audited(
    action: str | None = None,
    target: RefLike | None = None,
    actor: RefLike | None = None,
    outcome: OutcomeLike | None = None,
    changes: ChangesLike | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """``AuditLog.assert_audited`` on the active ``audit_log`` fixture's capture.

    Raises ``RuntimeError`` when no test has the ``audit_log`` fixture active.
    """
    __tracebackhide__ = True
    return _current().assert_audited(action, target, actor, outcome, changes, count)


def assert_not_audited(
    action: str | None = None,
    target: RefLike | None = None,
    actor: RefLike | None = None,
    outcome: OutcomeLike | None = None,
    changes: ChangesLike | None = None,
) -> None:
    """``AuditLog.assert_not_audited`` on the active ``audit_log`` fixture's capture."""
    __tracebackhide__ = True
    _current().assert_not_audited(action, target, actor, outcome, changes)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def audit_log() -> Iterator[AuditLog]:
    """Every audit event recorded during the test, by any AuditClient, from any thread."""
    log = AuditLog()
    with log.capture():
        yield log


@pytest.fixture
def audit_client(tmp_path: Path) -> Iterator[core.AuditClient]:
    """A strict AuditClient for the application under test that never sends anything:
    it spools into ``tmp_path``, and ``flush()`` and ``close()`` return at once."""
    client = core.AuditClient(UNREACHABLE_URL, "test-token", tmp_path / "trailseal-spool",
                              strict=True)
    # Without its sender the client still spools every event and shows it to observers;
    # nothing tries the network, so an app that flushes or closes its client (at shutdown,
    # say) does not wait out a timeout, and no retry warnings clutter the report.
    client.sender.stop(timeout=1.0)
    yield client
    client.close(timeout=0.1)
