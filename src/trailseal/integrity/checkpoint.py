"""C2SP checkpoints (c2sp.org/tlog-checkpoint): a log's signed tree head.

A checkpoint is the body of a signed note, at least three non-empty lines::

    audit.example.com/trailseal/acme      origin: which log
    20852163                              tree size, decimal, no leading zeros
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   RFC 6962 root hash, base64

Extension lines may follow. trailseal parses them but never signs any: some clients fail
on them and monitors cannot audit them, so metadata such as timestamps lives elsewhere.
"""

from __future__ import annotations

import base64
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass

from trailseal.integrity.hashing import HASH_SIZE
from trailseal.integrity.notes import (
    Signer,
    Verifier,
    decode_base64,
    is_valid_key_name,
    open_note,
)

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CheckpointError",
    "log_origin",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size accepted: what PostgreSQL's bigint and Go's int64 sizes hold."""

# ASCII digits only (str.isdigit would take any Unicode digit), and no leading zero.
_SIZE = re.compile(r"0|[1-9][0-9]*")
# Longer sizes exceed MAX_TREE_SIZE; refusing them early also keeps int() away from
# Python's own digit limit.
_SIZE_DIGITS = len(str(MAX_TREE_SIZE))
# Control characters other than newline; newline is checked per line.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


class CheckpointError(ValueError):
    """A checkpoint body, field or origin that breaks the tlog-checkpoint rules."""


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"the {what} must not be empty")
    if "\n" in line or _CONTROL.search(line):
        raise CheckpointError(f"the {what} may hold no newline or control character")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"the {what} must be valid UTF-8 (no lone surrogates)") from None


@dataclass(frozen=True)
class Checkpoint:
    """One tree head: the log's ``origin``, its ``size`` and the Merkle ``root_hash``.

    ``extensions`` holds any extension lines of a parsed checkpoint; trailseal's own
    checkpoints have none.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        # bool is an int subclass; a True size is a bug, not a tree of one leaf.
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError(f"the tree size must be an int, got {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"the tree size must be in 0..{MAX_TREE_SIZE}, got {self.size}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"the root hash must be {HASH_SIZE} bytes")
        for line in self.extensions:
            _check_line(line, "extension line")

    def body(self) -> str:
        """Return the note text: origin, size and base64 root, each ending in a newline.

        Extension lines, if any, follow, so a parsed checkpoint gives back its own text.
        """
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint note text, strictly.

    Raises ``CheckpointError`` unless ``body`` is valid UTF-8 ending in a newline, with
    no control characters and at least three lines, none empty: a non-empty origin, a
    decimal size without leading zeros (at most ``MAX_TREE_SIZE``), and the canonical
    standard base64 of a 32-byte root hash. Further lines are kept as ``extensions``.
    """
    if not isinstance(body, str):
        raise TypeError(f"a checkpoint body is str, not {type(body).__name__}")
    if not body.endswith("\n"):
        raise CheckpointError("a checkpoint body must end with a newline")
    if _CONTROL.search(body):
        raise CheckpointError("a checkpoint body may hold no control character but newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has an origin, a tree size and a root hash line")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.fullmatch(size_text):
        raise CheckpointError(
            "the tree size must be decimal digits without leading zeros, "
            f"got {reprlib.repr(size_text)}"
        )
    if len(size_text) > _SIZE_DIGITS:
        raise CheckpointError(f"the tree size must be at most {MAX_TREE_SIZE}")
    root = decode_base64(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash must be standard base64 of {HASH_SIZE} bytes")
    # The constructor checks the rest: empty lines, UTF-8, the size bound.
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """Return the checkpoint as a note signed by ``signer``.

    Refuses (``CheckpointError``) a checkpoint with extension lines, and an origin that is
    not a schema-less name without spaces or ``+``, as the spec recommends for issuers.
    """
    if checkpoint.extensions:
        raise CheckpointError("trailseal signs no checkpoint extension lines")
    if not is_valid_key_name(checkpoint.origin):
        raise CheckpointError(
            f"origin {checkpoint.origin!r} must have no spaces, control characters or '+'"
        )
    return signer.sign(checkpoint.body())


def open_checkpoint(
    note: str | bytes, verifiers: Sequence[Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and return the checkpoint it carries.

    One key may sign many logs' checkpoints, so pass ``origin`` to require the log that
    was asked for. Raises the ``NoteError`` of ``open_note`` (an unsigned or badly signed
    note), or ``CheckpointError`` for a body that is not a checkpoint or another origin.
    """
    checkpoint = parse_checkpoint(open_note(note, verifiers).body)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"checkpoint of {reprlib.repr(checkpoint.origin)}, expected {origin!r}"
        )
    return checkpoint


def log_origin(host: str, tenant: str) -> str:
    """Return the origin of ``tenant``'s log at ``host``: ``<host>/trailseal/<tenant>``.

    Both parts must be non-empty with no spaces, control characters or ``+``; the host has
    no URL scheme and the tenant no ``/``, so one origin never names two logs.
    """
    if not is_valid_key_name(host) or "://" in host:
        raise CheckpointError(f"log host {host!r} must be a schema-less name without spaces or '+'")
    if not is_valid_key_name(tenant) or "/" in tenant:
        raise CheckpointError(f"tenant {tenant!r} must be a name without spaces, '+' or '/'")
    return f"{host}/trailseal/{tenant}"
