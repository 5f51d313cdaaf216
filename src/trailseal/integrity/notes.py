"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then signature lines::

    <body text>\\n
    \\n
    — <key name> <base64(key id ‖ signature)>\\n

Keys travel as strings: a verifier key ``<name>+<key id hex>+<base64(0x01 ‖ public
key)>`` and a signer key ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>``. The
key id is the first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), so a name and
id together pick one key.

Errors::

    NoteError (ValueError)      a key string, key name or body that breaks the rules
    ├── MalformedNote           the note text does not have the signed-note form
    ├── InvalidSignature        a known key's signature does not verify
    └── UnverifiedNote          no known key signed the note
"""

from __future__ import annotations

import binascii
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ALG_ED25519",
    "KEY_ID_SIZE",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "SIGNATURE_SIZE",
    "InvalidSignature",
    "MalformedNote",
    "NoteError",
    "OpenedNote",
    "Signer",
    "UnverifiedNote",
    "Verifier",
    "decode_base64",
    "generate_key",
    "is_valid_key_name",
    "key_id",
    "open_note",
]

ALG_ED25519 = 0x01
"""Signature type byte of Ed25519, the only algorithm trailseal signs or verifies with."""

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (golang.org/x/mod/sumdb/note's limit; the spec
asks verifiers to accept at least 16)."""

MAX_NOTE_SIZE = 1 << 20
"""Most bytes a note may have: room for 16 post-quantum signatures of ~5 kB, while a
hostile megabytes-long input is refused before any decoding."""

KEY_ID_SIZE = 4
"""Bytes of a key id, the first bytes of every encoded signature."""

SIGNATURE_SIZE = 64
"""Bytes of an Ed25519 signature."""

_PUBLIC_KEY_SIZE = 32
_SEED_SIZE = 32
_SIG_PREFIX = "— "  # U+2014 EM DASH, then a space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
# Every ASCII control character except the newline; the spec forbids them in notes.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A key string, key name or note body that breaks the signed-note rules."""


class MalformedNote(NoteError):
    """Text that is not a well-formed signed note."""


class InvalidSignature(NoteError):
    """A signature by a known key (name and key id match) that does not verify."""

    def __init__(self, name: str, key_id: bytes) -> None:
        super().__init__(f"invalid signature for key {name}+{key_id.hex()}")
        self.name = name
        self.key_id = key_id


class UnverifiedNote(NoteError):
    """A well-formed note that no known key signed; its text must not be trusted."""

    def __init__(self, unverified: int) -> None:
        super().__init__(f"note has no signature by a known key ({unverified} by unknown keys)")
        self.unverified = unverified


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked.

    ``verified`` names the known keys whose signatures verified (each name once, in note
    order); ``unverified`` counts the distinct signature lines by keys not given.
    """

    body: str
    verified: tuple[str, ...]
    unverified: int


def is_valid_key_name(name: str) -> bool:
    """Whether ``name`` may name a key: non-empty, valid UTF-8, no Unicode space, no ``+``."""
    # Control characters are refused as well: a name must fit on a signature line.
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _CONTROL.search(name) is None
        and _encodes(name)
    )


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]."""
    data = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return sha256(data).digest()[:KEY_ID_SIZE]


def decode_base64(text: str) -> bytes | None:
    """Decode standard base64 (RFC 4648 §4), or None if ``text`` is not exactly the
    canonical encoding of some bytes.

    Only one spelling of each value is accepted (padding required, no whitespace, zero
    trailing bits), so a signature or root hash cannot be re-encoded into a second text.
    """
    if not text.isascii():
        return None
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None
    if binascii.b2a_base64(raw, newline=False).decode("ascii") != text:
        return None
    return raw


def _encode_base64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _encodes(text: str) -> bool:
    # A str holding a lone surrogate has no UTF-8 form.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise NoteError(
            f"invalid key name {reprlib.repr(name)}: it must be non-empty UTF-8 with no "
            "spaces, control characters or '+'"
        )


def _parse_key_id(hex_id: str) -> bytes:
    if not _KEY_ID_HEX.fullmatch(hex_id):
        raise NoteError(f"key id must be 8 lowercase hex digits, got {reprlib.repr(hex_id)}")
    return bytes.fromhex(hex_id)


def _parse_key_data(text: str, size: int, what: str) -> bytes:
    raw = decode_base64(text)
    if raw is None:
        raise NoteError(f"{what} is not canonical standard base64")
    if not raw:
        raise NoteError(f"{what} is empty")
    if raw[0] != ALG_ED25519:
        raise NoteError(f"{what} has an unknown algorithm (only 0x01, Ed25519, is supported)")
    if len(raw) != 1 + size:
        raise NoteError(f"{what} must be 0x01 and {size} bytes, got {len(raw) - 1} bytes")
    return raw[1:]


class Verifier:
    """An Ed25519 public key with its name: checks signatures by that key."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Make the verifier for ``name``'s 32-byte Ed25519 ``public_key``."""
        _check_name(name)
        if len(public_key) != _PUBLIC_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.public_key)
        try:
            self._key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise NoteError(f"not an Ed25519 public key: {exc}") from None

    @classmethod
    def from_key(cls, verifier_key: str) -> Verifier:
        """Parse a ``<name>+<key id hex>+<base64(0x01 ‖ public key)>`` verifier key.

        Raises ``NoteError`` for anything malformed, for another algorithm than Ed25519,
        and for a key id that is not the id of this name and key.
        """
        # The base64 part may itself hold '+', so split at most twice.
        parts = verifier_key.split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key has the form <name>+<key id>+<key data>")
        name, hex_id, data = parts
        _check_name(name)
        claimed = _parse_key_id(hex_id)
        verifier = cls(name, _parse_key_data(data, _PUBLIC_KEY_SIZE, "verifier key data"))
        if verifier.key_id != claimed:
            raise NoteError(
                f"key id {hex_id} does not match the key (it is {verifier.key_id.hex()})"
            )
        return verifier

    def verifier_key(self) -> str:
        """Return this key as a verifier key string."""
        data = _encode_base64(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{data}"

    def verify(self, body: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (64 bytes, without the key id) signs ``body`` by this key."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, body)
        except _BadSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier({self.verifier_key()!r})"


class Signer:
    """An Ed25519 private key with its name: signs note bodies."""

    __slots__ = ("_key", "_verifier", "key_id", "name")

    def __init__(self, name: str, seed: bytes) -> None:
        """Make the signer for ``name`` from a 32-byte Ed25519 private key seed."""
        _check_name(name)
        if len(seed) != _SEED_SIZE:
            raise NoteError(f"an Ed25519 seed has 32 bytes, got {len(seed)}")
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._verifier = Verifier(name, public)
        self.name = name
        self.key_id = self._verifier.key_id

    @classmethod
    def from_key(cls, signer_key: str) -> Signer:
        """Parse a ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>`` signer key.

        Raises ``NoteError`` for anything malformed, for another algorithm than Ed25519,
        and for a key id that is not the id of this name and the seed's public key.
        """
        if not signer_key.startswith(_PRIVATE_PREFIX):
            raise NoteError("a signer key starts with PRIVATE+KEY+")
        parts = signer_key[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise NoteError("a signer key has the form PRIVATE+KEY+<name>+<key id>+<key data>")
        name, hex_id, data = parts
        _check_name(name)
        claimed = _parse_key_id(hex_id)
        signer = cls(name, _parse_key_data(data, _SEED_SIZE, "signer key data"))
        # The id is a hash of the public key, so it can only be checked after deriving it.
        if signer.key_id != claimed:
            raise NoteError(f"key id {hex_id} does not match the key (it is {signer.key_id.hex()})")
        return signer

    def verifier_key(self) -> str:
        """Return the matching verifier key string, safe to publish."""
        return self._verifier.verifier_key()

    def verifier(self) -> Verifier:
        """Return the matching verifier."""
        return self._verifier

    def sign(self, body: str) -> str:
        """Return the signed note: ``body``, a blank line, and this key's signature line.

        ``body`` must end with a newline and hold no control character but newlines
        (empty lines are allowed: the last blank line of a note ends its text).
        """
        data = _body_bytes(body)
        signature = self._key.sign(data)
        note = f"{body}\n{_SIG_PREFIX}{self.name} {_encode_base64(self.key_id + signature)}\n"
        if len(note.encode("utf-8")) > MAX_NOTE_SIZE:
            raise NoteError(f"a signed note may have at most {MAX_NOTE_SIZE} bytes")
        return note

    def __repr__(self) -> str:
        # Never the seed: reprs end up in logs.
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()!r})"


def _body_bytes(body: str) -> bytes:
    if not body.endswith("\n"):
        raise NoteError("a note body must end with a newline")
    if _CONTROL.search(body):
        raise NoteError("a note body may hold no control character but newline")
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("a note body must be valid UTF-8 (no lone surrogates)") from None


def generate_key(name: str) -> tuple[str, str]:
    """Return a new (signer key, verifier key) pair of strings for ``name``.

    The signer key is the secret; the verifier key is published to whoever checks notes.
    """
    _check_name(name)
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    signer = Signer(name, seed)
    secret = _encode_base64(bytes([ALG_ED25519]) + seed)
    return f"{_PRIVATE_PREFIX}{name}+{signer.key_id.hex()}+{secret}", signer.verifier_key()


def _note_text(note: str | bytes) -> str:
    if isinstance(note, str):
        # A str never has more characters than its UTF-8 form has bytes: refuse a huge
        # one before encoding it.
        if len(note) > MAX_NOTE_SIZE:
            raise MalformedNote(f"a note may have at most {MAX_NOTE_SIZE} bytes")
        try:
            size = len(note.encode("utf-8"))
        except UnicodeEncodeError:
            raise MalformedNote("a note must be valid UTF-8") from None
        text = note
    elif isinstance(note, bytes):
        size = len(note)
        try:
            text = note.decode("utf-8") if size <= MAX_NOTE_SIZE else ""
        except UnicodeDecodeError:
            raise MalformedNote("a note must be valid UTF-8") from None
    else:
        raise TypeError(f"a note is str or bytes, not {type(note).__name__}")
    if size > MAX_NOTE_SIZE:
        raise MalformedNote(f"a note may have at most {MAX_NOTE_SIZE} bytes")
    if _CONTROL.search(text):
        raise MalformedNote("a note may hold no control character but newline")
    return text


def _parse_signature(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNote("a signature line starts with an em dash (U+2014) and a space")
    name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not space or not is_valid_key_name(name):
        raise MalformedNote("a signature line is '— <key name> <base64 signature>'")
    raw = decode_base64(encoded)
    if raw is None or len(raw) <= KEY_ID_SIZE:
        raise MalformedNote(
            f"the signature of {reprlib.repr(name)} is not base64 of a key id and bytes"
        )
    return name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Check a signed note against the known ``verifiers`` and return its body.

    Signatures by keys not in ``verifiers`` (name and key id both matching) are ignored
    and counted. Raises ``MalformedNote`` for text that is not a signed note (or has more
    than ``MAX_SIGNATURES`` signatures or ``MAX_NOTE_SIZE`` bytes), ``InvalidSignature``
    if any signature by a known key fails, and ``UnverifiedNote`` if no known key signed.
    """
    text = _note_text(note)
    # The body keeps its final newline; the last blank line separates it from signatures,
    # and no signature line can hold one, so the body itself may have empty lines.
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedNote("a note needs a blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNote("the signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"a note may carry at most {MAX_SIGNATURES} signatures")

    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for verifier in verifiers:
        same = known.setdefault((verifier.name, verifier.key_id), [])
        if verifier.public_key not in (v.public_key for v in same):
            same.append(verifier)

    signed = body.encode("utf-8")
    verified: dict[str, None] = {}
    unknown: set[str] = set()
    for line in lines:
        name, kid, signature = _parse_signature(line)
        candidates = known.get((name, kid))
        if candidates is None:
            unknown.add(line)
            continue
        # Two configured keys can share a name and id only by collision; trusting either
        # is what the caller asked for, so one that verifies is enough.
        if not any(v.verify(signed, signature) for v in candidates):
            raise InvalidSignature(name, kid)
        verified[name] = None
    if not verified:
        raise UnverifiedNote(len(unknown))
    return OpenedNote(body=body, verified=tuple(verified), unverified=len(unknown))
