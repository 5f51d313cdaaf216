"""C2SP signed notes: the sumdb known answer, vector files, every single-bit flip, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

import trailseal.integrity
from trailseal.integrity import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    InvalidSignature,
    MalformedNote,
    NoteError,
    OpenedNote,
    Signer,
    UnverifiedNote,
    Verifier,
    generate_key,
    open_note,
)

VECTORS = Path(__file__).parent / "vectors" / "notes"
ERRORS: dict[str, type[NoteError]] = {
    "MalformedNote": MalformedNote,
    "InvalidSignature": InvalidSignature,
    "UnverifiedNote": UnverifiedNote,
}


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


KAT = load("kat.json")
PETER = KAT["peter"]
ENOCH = KAT["enoch"]
KEYS = load("keys.json")
ROUND_TRIPS = load("roundtrip.json")
OPEN_CASES = load("open.json")

FUZZ = settings(max_examples=200, deadline=None)


def peter_verifier() -> Verifier:
    return Verifier.from_key(PETER["verifier_key"])


def reference_sign(signer_key: str, body: str) -> str:
    """The signed note built straight from the spec, independent of trailseal's Signer."""
    _, _, name, _, data = signer_key.split("+", 4)
    seed = base64.b64decode(data)[1:]
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    signature = private.sign(body.encode())
    return f"{body}\n— {name} {base64.b64encode(key_id + signature).decode()}\n"


# --- the known answer (golang.org/x/mod/sumdb/note) ----------------------------------------


def test_known_answer_signs_byte_exactly() -> None:
    signer = Signer.from_key(PETER["signer_key"])
    note = signer.sign(PETER["body"])
    assert note == PETER["note"]
    assert note == PETER["body"] + "\n" + PETER["signature_line"]
    assert note.endswith(
        "\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
        "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    )


def test_known_answer_keys() -> None:
    signer = Signer.from_key(PETER["signer_key"])
    verifier = peter_verifier()
    assert signer.name == verifier.name == "PeterNeumann"
    assert signer.key_id == verifier.key_id == bytes.fromhex("c74f20a3")
    assert signer.verifier_key() == PETER["verifier_key"]
    assert verifier.verifier_key() == PETER["verifier_key"]


def test_known_answer_opens() -> None:
    opened = open_note(PETER["note"], [peter_verifier()])
    assert opened == OpenedNote(body=PETER["body"], verified=("PeterNeumann",), unverified=0)


def test_known_answer_opens_from_bytes() -> None:
    assert open_note(PETER["note"].encode(), [peter_verifier()]).body == PETER["body"]


def test_signature_covers_body_with_final_newline_and_not_blank_line() -> None:
    verifier = peter_verifier()
    raw = base64.b64decode(PETER["signature_line"].split(" ")[2])
    body = PETER["body"].encode()
    assert raw[:4] == verifier.key_id
    assert verifier.verify(body, raw[4:])
    assert not verifier.verify(body[:-1], raw[4:])
    assert not verifier.verify(body + b"\n", raw[4:])


# --- key strings ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS["verifier"]["valid"])
def test_verifier_key_round_trips(key: str) -> None:
    assert Verifier.from_key(key).verifier_key() == key


@pytest.mark.parametrize(
    "case", KEYS["verifier"]["invalid"], ids=[c["why"] for c in KEYS["verifier"]["invalid"]]
)
def test_verifier_key_rejected(case: dict[str, str]) -> None:
    with pytest.raises(NoteError):
        Verifier.from_key(case["key"])


@pytest.mark.parametrize("key", KEYS["signer"]["valid"])
def test_signer_key_parses(key: str) -> None:
    signer = Signer.from_key(key)
    assert key.startswith(f"PRIVATE+KEY+{signer.name}+{signer.key_id.hex()}+")


@pytest.mark.parametrize(
    "case", KEYS["signer"]["invalid"], ids=[c["why"] for c in KEYS["signer"]["invalid"]]
)
def test_signer_key_rejected(case: dict[str, str]) -> None:
    with pytest.raises(NoteError):
        Signer.from_key(case["key"])


def test_wrong_key_id_names_the_right_one() -> None:
    with pytest.raises(NoteError, match=r"does not match the key.*c74f20a3"):
        Verifier.from_key("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    with pytest.raises(NoteError, match=r"does not match the key.*c74f20a3"):
        Signer.from_key(PETER["signer_key"].replace("c74f20a3", "c74f20a4"))


@pytest.mark.parametrize("which", ["signer_key", "verifier_key"])
def test_every_other_substring_of_a_key_is_rejected(which: str) -> None:
    key = PETER[which]
    parse = Signer.from_key if which == "signer_key" else Verifier.from_key
    accepted = []
    for start in range(len(key) + 1):
        for end in range(start + 1, len(key) + 1):
            if (start, end) == (0, len(key)):
                continue
            try:
                parse(key[start:end])
            except NoteError:
                continue
            accepted.append(key[start:end])
    assert accepted == []


@pytest.mark.parametrize("which", ["signer_key", "verifier_key"])
def test_every_single_character_change_of_a_key_is_rejected(which: str) -> None:
    key = PETER[which]
    parse = Signer.from_key if which == "signer_key" else Verifier.from_key
    accepted = []
    for i in range(len(key)):
        changed = key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :]
        try:
            parse(changed)
        except NoteError:
            continue
        accepted.append(changed)
    assert accepted == []


def test_signer_repr_hides_the_seed() -> None:
    seed_b64 = PETER["signer_key"].rsplit("+", 1)[1]
    text = repr(Signer.from_key(PETER["signer_key"]))
    assert "PeterNeumann" in text
    assert seed_b64 not in text
    assert seed_b64[1:20] not in text


# --- generated keys and round trips ----------------------------------------------------------


@pytest.mark.parametrize("name", ["audit.example.com/trailseal", "EnochRoot", "журнал.example"])
def test_generated_keys_round_trip(name: str) -> None:
    signer_key, verifier_key = generate_key(name)
    signer = Signer.from_key(signer_key)
    verifier = Verifier.from_key(verifier_key)
    assert signer.name == verifier.name == name
    assert signer.key_id == verifier.key_id
    assert signer.verifier_key() == verifier_key
    assert signer_key.startswith(f"PRIVATE+KEY+{name}+{verifier.key_id.hex()}+")
    body = "a checkpoint\n42\n"
    note = signer.sign(body)
    assert note == reference_sign(signer_key, body)
    assert open_note(note, [verifier]) == OpenedNote(body, (name,), 0)


def test_generated_keys_differ() -> None:
    assert generate_key("x") != generate_key("x")


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\nb", "a\tb", "a\u3000b", "a\u00a0b", "a\x01b", "\ud800"]
)
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError):
        generate_key(name)
    with pytest.raises(NoteError):
        Signer(name, bytes(32))


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=[c["description"] for c in ROUND_TRIPS])
def test_round_trip_vector(case: dict[str, str]) -> None:
    signer = Signer.from_key(case["signer_key"])
    assert signer.verifier_key() == case["verifier_key"]
    assert signer.sign(case["body"]) == case["note"]
    assert reference_sign(case["signer_key"], case["body"]) == case["note"]
    opened = open_note(case["note"], [Verifier.from_key(case["verifier_key"])])
    assert opened == OpenedNote(case["body"], (signer.name,), 0)


@pytest.mark.parametrize(
    "body", ["", "no final newline", "tab\there\n", "cr\r\n", "nul\x00\n", "\ud800\n"]
)
def test_sign_refuses_bodies_that_are_not_note_text(body: str) -> None:
    signer = Signer.from_key(PETER["signer_key"])
    with pytest.raises(NoteError):
        signer.sign(body)


def test_sign_refuses_a_note_beyond_the_size_limit() -> None:
    signer = Signer.from_key(PETER["signer_key"])
    with pytest.raises(NoteError, match="at most"):
        signer.sign("x" * MAX_NOTE_SIZE + "\n")


def test_verify_rejects_wrong_lengths_and_tampering() -> None:
    signer_key, verifier_key = generate_key("k")
    note = Signer.from_key(signer_key).sign("hi\n")
    raw = base64.b64decode(note.rsplit(" ", 1)[1])[4:]
    verifier = Verifier.from_key(verifier_key)
    assert verifier.verify(b"hi\n", raw)
    assert not verifier.verify(b"hi\n", raw[:-1])
    assert not verifier.verify(b"hi\n", raw + b"\x00")
    assert not verifier.verify(b"hi\n", b"")
    assert not verifier.verify(b"ho\n", raw)


# --- opening notes: the vector file -------------------------------------------------------------


def case_note(case: dict[str, Any]) -> str | bytes:
    if "note_hex" in case:
        return bytes.fromhex(case["note_hex"])
    note: str = case["note"]
    return note


@pytest.mark.parametrize("case", OPEN_CASES, ids=[c["why"] for c in OPEN_CASES])
def test_open_vector(case: dict[str, Any]) -> None:
    verifiers = [Verifier.from_key(k) for k in case["verifiers"]]
    note = case_note(case)
    if "error" in case:
        with pytest.raises(ERRORS[case["error"]]) as caught:
            open_note(note, verifiers)
        if "unverified" in case:
            assert isinstance(caught.value, UnverifiedNote)
            assert caught.value.unverified == case["unverified"]
    else:
        opened = open_note(note, verifiers)
        assert opened == OpenedNote(case["body"], tuple(case["verified"]), case["unverified"])


def test_the_c2sp_example_splits_at_the_last_blank_line() -> None:
    with pytest.raises(UnverifiedNote):
        open_note(KAT["c2sp_example"]["note"], [])
    signer_key, verifier_key = generate_key("quasimodo.example/salvatore")
    body = KAT["c2sp_example"]["body"]
    note = Signer.from_key(signer_key).sign(body)
    assert open_note(note, [Verifier.from_key(verifier_key)]).body == body


def test_invalid_signature_names_the_key() -> None:
    note = PETER["note"].replace("x08go/ZJ", "x08go/ZK")
    with pytest.raises(InvalidSignature, match="PeterNeumann\\+c74f20a3") as caught:
        open_note(note, [peter_verifier()])
    assert caught.value.name == "PeterNeumann"
    assert caught.value.key_id == bytes.fromhex("c74f20a3")


def test_a_repeated_verifier_changes_nothing() -> None:
    verifier = peter_verifier()
    assert open_note(PETER["note"], [verifier, verifier, peter_verifier()]).verified == (
        "PeterNeumann",
    )


def test_signature_limit() -> None:
    body_and_blank = PETER["body"] + "\n"
    line = PETER["signature_line"]
    at_limit = open_note(body_and_blank + line * MAX_SIGNATURES, [peter_verifier()])
    assert at_limit.verified == ("PeterNeumann",)
    for verifiers in ([peter_verifier()], []):
        with pytest.raises(MalformedNote, match="at most"):
            open_note(body_and_blank + line * (MAX_SIGNATURES + 1), verifiers)


def test_at_least_sixteen_unknown_signatures_are_accepted() -> None:
    lines = "".join(
        Signer.from_key(generate_key(f"witness{i}")[0]).sign(PETER["body"]).split("\n\n")[-1]
        for i in range(16)
    )
    note = PETER["note"] + lines
    assert open_note(note, [peter_verifier()]).unverified == 16


def test_size_limit() -> None:
    huge = "a\n" * (MAX_NOTE_SIZE // 2) + "\n" + PETER["signature_line"]
    for note in (huge, huge.encode(), "é" * (MAX_NOTE_SIZE // 2 + 1)):
        with pytest.raises(MalformedNote, match="at most"):
            open_note(note, [peter_verifier()])


def test_open_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        open_note(bytearray(PETER["note"].encode()), [peter_verifier()])  # type: ignore[arg-type]


def test_note_errors_are_value_errors() -> None:
    for error in (NoteError, MalformedNote, InvalidSignature, UnverifiedNote):
        assert issubclass(error, ValueError)
        assert issubclass(error, NoteError)


# --- every single-bit flip of the known answer --------------------------------------------------


def signed_parts() -> tuple[bytes, bytes, bytes]:
    """The KAT split into body bytes, key id and signature."""
    raw = base64.b64decode(PETER["signature_line"].split(" ")[2])
    return PETER["body"].encode(), raw[:4], raw[4:]


def assemble(body: bytes, key_id: bytes, signature: bytes) -> bytes:
    encoded = base64.b64encode(key_id + signature)
    return body + b"\n\xe2\x80\x94 PeterNeumann " + encoded + b"\n"


def flips(data: bytes) -> list[tuple[int, bytes]]:
    return [
        (bit, data[: bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1 :])
        for bit in range(len(data) * 8)
    ]


def test_assemble_rebuilds_the_known_answer() -> None:
    assert assemble(*signed_parts()) == PETER["note"].encode()


def test_every_signature_bit_flip_is_an_invalid_signature() -> None:
    body, key_id, signature = signed_parts()
    verifiers = [peter_verifier()]
    for bit, flipped in flips(signature):
        with pytest.raises(InvalidSignature):
            open_note(assemble(body, key_id, flipped), verifiers)
            pytest.fail(f"signature bit {bit} flipped and still verified")


def test_every_key_id_bit_flip_is_an_unknown_key() -> None:
    body, key_id, signature = signed_parts()
    verifiers = [peter_verifier()]
    for bit, flipped in flips(key_id):
        with pytest.raises(UnverifiedNote) as caught:
            open_note(assemble(body, flipped, signature), verifiers)
            pytest.fail(f"key id bit {bit} flipped and still verified")
        assert caught.value.unverified == 1


def test_every_body_bit_flip_is_refused() -> None:
    body, key_id, signature = signed_parts()
    verifiers = [peter_verifier()]
    seen: set[type[NoteError]] = set()
    for bit, flipped in flips(body):
        with pytest.raises((MalformedNote, InvalidSignature)) as caught:
            open_note(assemble(flipped, key_id, signature), verifiers)
            pytest.fail(f"body bit {bit} flipped and still verified")
        seen.add(type(caught.value))
    # Both outcomes occur: flips to control bytes or bad UTF-8 are malformed, the rest
    # reach the signature check.
    assert seen == {MalformedNote, InvalidSignature}


# --- fuzzing: hostile input never escapes as an untyped exception ------------------------------


def open_or_error(note: str | bytes) -> OpenedNote | NoteError:
    try:
        return open_note(note, [peter_verifier()])
    except NoteError as exc:
        return exc


@FUZZ
@given(st.text())
def test_fuzz_open_text(note: str) -> None:
    open_or_error(note)


@FUZZ
@given(st.binary())
def test_fuzz_open_bytes(note: bytes) -> None:
    open_or_error(note)


@FUZZ
@given(st.data())
def test_fuzz_open_mutated_known_answer(data: st.DataObject) -> None:
    note = PETER["note"]
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(note)))
        cut = data.draw(st.integers(0, 3))
        insert = data.draw(st.sampled_from(["", "\n", "\n\n", " ", "—", "+", "=", "A", "\x00"]))
        note = note[:at] + insert + note[at + cut :]
    result = open_or_error(note)
    if isinstance(result, OpenedNote):
        assert result.body == PETER["body"]


@FUZZ
@given(st.text())
def test_fuzz_key_strings(text: str) -> None:
    for parse in (Verifier.from_key, Signer.from_key):
        with contextlib.suppress(NoteError):
            parse(text)
        with contextlib.suppress(NoteError):
            parse("PRIVATE+KEY+" + text)


def test_package_exports_notes() -> None:
    exported = set(trailseal.integrity.__all__)
    assert {
        "MAX_NOTE_SIZE",
        "MAX_SIGNATURES",
        "InvalidSignature",
        "MalformedNote",
        "NoteError",
        "OpenedNote",
        "Signer",
        "UnverifiedNote",
        "Verifier",
        "generate_key",
        "open_note",
    } <= exported
