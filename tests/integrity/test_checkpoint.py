"""C2SP checkpoints: body format, strict parsing, signing and opening, origins, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trailseal.integrity
from trailseal.integrity import (
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    InvalidSignature,
    NoteError,
    Signer,
    UnverifiedNote,
    Verifier,
    generate_key,
    log_origin,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "notes" / "checkpoints.json").read_text(encoding="utf-8")
)
VALID: list[dict[str, Any]] = VECTORS["valid"]
INVALID: list[dict[str, str]] = VECTORS["invalid"]
SIGNED: dict[str, Any] = VECTORS["signed"]

ORIGIN = "audit.example.com/trailseal/acme"
ROOT = sha256(b"some root").digest()
FUZZ = settings(max_examples=200, deadline=None)


# --- the body ----------------------------------------------------------------------------------


def test_body_is_three_lines() -> None:
    checkpoint = Checkpoint(ORIGIN, 20852163, ROOT)
    root = base64.b64encode(ROOT).decode()
    assert checkpoint.body() == f"{ORIGIN}\n20852163\n{root}\n"


def test_body_of_the_empty_tree() -> None:
    assert Checkpoint(ORIGIN, 0, EMPTY_ROOT).body() == (
        f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )


def test_checkpoint_is_frozen_and_compares_by_value() -> None:
    checkpoint = Checkpoint(ORIGIN, 1, ROOT)
    assert checkpoint == Checkpoint(ORIGIN, 1, ROOT)
    with pytest.raises(AttributeError):
        checkpoint.size = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        ("a\x00b", 1, ROOT),
        ("\ud800", 1, ROOT),
        (ORIGIN, -1, ROOT),
        (ORIGIN, MAX_TREE_SIZE + 1, ROOT),
        (ORIGIN, True, ROOT),
        (ORIGIN, 1.0, ROOT),
        (ORIGIN, "1", ROOT),
        (ORIGIN, 1, ROOT[:31]),
        (ORIGIN, 1, ROOT + b"\x00"),
        (ORIGIN, 1, ROOT.hex()),
        (ORIGIN, 1, bytearray(ROOT)),
    ],
)
def test_constructor_refuses_what_has_no_body(origin: str, size: Any, root: Any) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root)


@pytest.mark.parametrize("extension", ["", "a\nb", "a\rb"])
def test_constructor_refuses_bad_extension_lines(extension: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(ORIGIN, 1, ROOT, (extension,))


# --- parsing: the vector file ---------------------------------------------------------------


@pytest.mark.parametrize("case", VALID, ids=[c["why"] for c in VALID])
def test_valid_vector(case: dict[str, Any]) -> None:
    checkpoint = parse_checkpoint(case["body"])
    assert checkpoint == Checkpoint(
        case["origin"], case["size"], bytes.fromhex(case["root_hex"]), tuple(case["extensions"])
    )
    assert checkpoint.body() == case["body"]


@pytest.mark.parametrize("case", INVALID, ids=[c["why"] for c in INVALID])
def test_invalid_vector(case: dict[str, str]) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(case["body"])


def test_size_error_messages_stay_short() -> None:
    with pytest.raises(CheckpointError) as caught:
        parse_checkpoint(f"{ORIGIN}\n0{'9' * 100_000}\n{base64.b64encode(ROOT).decode()}\n")
    assert len(str(caught.value)) < 200


def test_parse_refuses_bytes() -> None:
    with pytest.raises(TypeError):
        parse_checkpoint(SIGNED["note"].encode())


# --- signing and opening ----------------------------------------------------------------------


def test_signed_vector_is_reproduced_byte_exactly() -> None:
    checkpoint = Checkpoint(SIGNED["origin"], SIGNED["size"], bytes.fromhex(SIGNED["root_hex"]))
    assert sign_checkpoint(checkpoint, Signer.from_key(SIGNED["signer_key"])) == SIGNED["note"]


def test_signed_vector_opens() -> None:
    verifier = Verifier.from_key(SIGNED["verifier_key"])
    checkpoint = open_checkpoint(SIGNED["note"], [verifier], origin=SIGNED["origin"])
    assert checkpoint.origin == SIGNED["origin"]
    assert checkpoint.size == SIGNED["size"]
    assert checkpoint.root_hash.hex() == SIGNED["root_hex"]
    assert checkpoint.extensions == ()
    assert open_checkpoint(SIGNED["note"].encode(), [verifier]) == checkpoint


def test_signed_note_carries_exactly_the_body() -> None:
    checkpoint = Checkpoint(ORIGIN, 7, ROOT)
    signer_key, _ = generate_key("audit.example.com/trailseal")
    note = sign_checkpoint(checkpoint, Signer.from_key(signer_key))
    body, signatures = note.split("\n\n")
    assert body + "\n" == checkpoint.body()
    assert signatures.startswith("— audit.example.com/trailseal ")
    assert signatures.count("\n") == 1


@pytest.mark.parametrize("size", [0, 1, 2, 255, 256, 70_000, MAX_TREE_SIZE])
def test_round_trip(size: int) -> None:
    signer_key, verifier_key = generate_key("audit.example.com/trailseal")
    checkpoint = Checkpoint(ORIGIN, size, sha256(str(size).encode()).digest())
    note = sign_checkpoint(checkpoint, Signer.from_key(signer_key))
    assert open_checkpoint(note, [Verifier.from_key(verifier_key)]) == checkpoint


def test_open_requires_a_known_signature() -> None:
    with pytest.raises(UnverifiedNote):
        open_checkpoint(SIGNED["note"], [])
    _, stranger = generate_key("audit.example.com/trailseal")
    with pytest.raises(UnverifiedNote):
        open_checkpoint(SIGNED["note"], [Verifier.from_key(stranger)])


def test_open_refuses_a_tampered_size() -> None:
    verifier = Verifier.from_key(SIGNED["verifier_key"])
    tampered = SIGNED["note"].replace(f"\n{SIGNED['size']}\n", f"\n{SIGNED['size'] + 1}\n", 1)
    assert tampered != SIGNED["note"]
    with pytest.raises(InvalidSignature):
        open_checkpoint(tampered, [verifier])


def test_open_checks_the_expected_origin() -> None:
    verifier = Verifier.from_key(SIGNED["verifier_key"])
    with pytest.raises(CheckpointError, match="expected"):
        open_checkpoint(SIGNED["note"], [verifier], origin="audit.example.com/trailseal/other")


def test_open_refuses_a_signed_body_that_is_not_a_checkpoint() -> None:
    signer_key, verifier_key = generate_key("k")
    note = Signer.from_key(signer_key).sign(f"{ORIGIN}\n01\n{base64.b64encode(ROOT).decode()}\n")
    with pytest.raises(CheckpointError):
        open_checkpoint(note, [Verifier.from_key(verifier_key)])


def test_open_keeps_extension_lines_of_other_logs() -> None:
    signer_key, verifier_key = generate_key("example.com/log")
    body = f"example.com/log\n5\n{base64.b64encode(ROOT).decode()}\nextension one\n"
    note = Signer.from_key(signer_key).sign(body)
    checkpoint = open_checkpoint(note, [Verifier.from_key(verifier_key)])
    assert checkpoint.extensions == ("extension one",)


def test_sign_refuses_extension_lines() -> None:
    signer = Signer.from_key(SIGNED["signer_key"])
    with pytest.raises(CheckpointError, match="extension"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT, ("Timestamp: 1",)), signer)


@pytest.mark.parametrize("origin", ["my log", "log+1", "log\u3000x"])
def test_sign_refuses_origins_the_spec_advises_against(origin: str) -> None:
    signer = Signer.from_key(SIGNED["signer_key"])
    with pytest.raises(CheckpointError, match="origin"):
        sign_checkpoint(Checkpoint(origin, 1, ROOT), signer)


# --- origins --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "tenant", "origin"),
    [
        ("audit.example.com", "acme", "audit.example.com/trailseal/acme"),
        ("localhost:8443", "t_1-x", "localhost:8443/trailseal/t_1-x"),
        ("example.com/audit", "acme", "example.com/audit/trailseal/acme"),
    ],
)
def test_log_origin(host: str, tenant: str, origin: str) -> None:
    assert log_origin(host, tenant) == origin


@pytest.mark.parametrize(
    ("host", "tenant"),
    [
        ("", "acme"),
        ("https://audit.example.com", "acme"),
        ("audit example", "acme"),
        ("audit+example", "acme"),
        ("audit.example.com", ""),
        ("audit.example.com", "a/b"),
        ("audit.example.com", "a b"),
        ("audit.example.com", "a+b"),
        ("audit.example.com", "a\nb"),
    ],
)
def test_log_origin_refuses(host: str, tenant: str) -> None:
    with pytest.raises(CheckpointError):
        log_origin(host, tenant)


def test_errors_are_value_errors() -> None:
    assert issubclass(CheckpointError, ValueError)


# --- fuzzing ----------------------------------------------------------------------------------


@FUZZ
@given(st.text())
def test_fuzz_parse_text(body: str) -> None:
    with contextlib.suppress(CheckpointError):
        parse_checkpoint(body)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(st.characters(max_codepoint=0x7F), max_size=50),
            st.sampled_from(["0", "01", "-1", "9" * 30, base64.b64encode(ROOT).decode(), ""]),
        ),
        max_size=6,
    ),
    st.booleans(),
)
def test_fuzz_parse_line_shaped(lines: list[str], final_newline: bool) -> None:
    body = "\n".join(lines) + ("\n" if final_newline else "")
    try:
        checkpoint = parse_checkpoint(body)
    except CheckpointError:
        return
    assert checkpoint.body() == body


@FUZZ
@given(
    origin=st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ).filter(lambda s: "\n" not in s),
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
)
def test_fuzz_body_round_trip(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    assert parse_checkpoint(checkpoint.body()) == checkpoint


@FUZZ
@given(st.binary())
def test_fuzz_open_bytes(note: bytes) -> None:
    with contextlib.suppress(NoteError, CheckpointError):
        open_checkpoint(note, [Verifier.from_key(SIGNED["verifier_key"])])


def test_package_exports_checkpoints() -> None:
    assert {
        "MAX_TREE_SIZE",
        "Checkpoint",
        "CheckpointError",
        "log_origin",
        "open_checkpoint",
        "parse_checkpoint",
        "sign_checkpoint",
    } <= set(trailseal.integrity.__all__)
