"""Meta-audit of reads: what a read handler tells the meta-audit about itself.

A read handler (query, timeline, state, export, proof, tile, stream ...) calls
:func:`note_read` once, with the meta action and the filters it was asked for, and keeps
the returned note's ``count`` up to date as it produces results (a streamed response
keeps counting while it streams). Recording the note as an event in the tenant's own log
happens after the response is complete, outside the handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from trailseal.tenants import Principal

META_PREFIX = "audit."
"""Actions in this namespace are written by trailseal itself and refused from producers."""


@dataclass
class ReadNote:
    """One read, as the meta-audit records it."""

    principal: Principal
    action: str
    filters: dict[str, Any] = field(default_factory=dict)
    count: int = 0
    completed: bool = True


def note_read(
    request: Request, principal: Principal, action: str, filters: dict[str, Any] | None = None
) -> ReadNote:
    """Note that this request is a read of ``principal``'s log, to be meta-audited as
    ``action``; the caller sets ``count`` on the returned note."""
    if not action.startswith(META_PREFIX):
        raise ValueError(f"meta-audit actions live under {META_PREFIX!r}: {action!r}")
    note = ReadNote(principal, action, dict(filters or {}))
    request.state.meta_read = note
    return note


def pending_read(request: Request) -> ReadNote | None:
    """The note a handler left on this request, if any."""
    note: ReadNote | None = getattr(request.state, "meta_read", None)
    return note
