"""The exception tree of trailseal.

::

    TrailsealError
    ├── ConfigurationError      settings or environment cannot work
    ├── MigrationError          the schema cannot be brought to the code's version
    ├── NotFound                a tenant, key or event that does not exist (for this tenant)
    └── InvalidInput            input that breaks a rule; carries field-level problems
        ├── BadJSON             a body that is not acceptable JSON at all
        └── OutOfRange          an index or size the log does not have

The web layer turns ``InvalidInput`` into RFC 9457 problem documents; the CLI prints the
message. Neither ever shows a traceback for these.
"""

from __future__ import annotations

from dataclasses import dataclass


class TrailsealError(Exception):
    """Base of every error trailseal raises on purpose."""


class ConfigurationError(TrailsealError):
    """Settings or environment that cannot work."""


class MigrationError(TrailsealError):
    """The database schema cannot be brought to the code's version."""


class NotFound(TrailsealError):
    """A tenant, key or event that does not exist, or not for this tenant."""


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule: which event (by index in the batch), which field, and why."""

    index: int | None
    path: str
    message: str


class InvalidInput(TrailsealError):
    """Input that breaks a rule of the event schema or of a command."""

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class BadJSON(InvalidInput):
    """A request body that is not acceptable JSON (syntax, depth, numbers, encoding)."""


class OutOfRange(InvalidInput):
    """An index or tree size outside the log (answered with 400)."""
