"""Offline evidence bundles: exported from the database, checked with nothing but the
bundle and a verifier key; every alteration or missing event inside the range is named."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from tests.support import an_event, make_tenant
from trailseal import ingest
from trailseal.bundle import check_bundle
from trailseal.cli import app
from trailseal.integrity.notes import generate_key
from trailseal.runtime import load_signer


@pytest.fixture
def exported(client, database_url, settings, tmp_path, monkeypatch):
    """A tenant with 300 events in three batches, and a bundle of the middle batch."""
    monkeypatch.setenv("TRAILSEAL_DATABASE_URL", database_url)
    tenant = make_tenant(database_url, "bundle")
    marks = []
    for _ in range(3):
        marks.append(ingest.now() - timedelta(milliseconds=1))
        events = [an_event() for _ in range(100)]
        r = client.post("/v1/events?wait=sequenced", json={"events": events},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201
    marks.append(ingest.now() + timedelta(seconds=1))
    out = tmp_path / "bundle.zip"
    result = CliRunner().invoke(app, [
        "export", "--tenant", tenant.name, "--bundle", str(out),
        "--since", marks[1].isoformat(), "--until", marks[2].isoformat(),
        "--data-dir", str(settings.data_dir),
    ])
    assert result.exit_code == 0, result.output
    return tenant, out, load_signer(settings).verifier_key()


def _rewrite(path, change) -> bytes:
    members = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    change(members)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_bundle_verifies_offline(exported):
    tenant, path, key = exported
    check = check_bundle(path.read_bytes(), [key])
    assert check.ok, check.problems
    assert (check.tenant, check.first, check.end, check.size, check.events) == (
        tenant.name, 100, 200, 300, 100)
    result = CliRunner().invoke(app, ["verify-bundle", str(path), "--key", key])
    assert result.exit_code == 0 and "verified" in result.output


def _lines(members, edit):
    lines = members["entries.jsonl"].split(b"\n")
    edit(lines)
    members["entries.jsonl"] = b"\n".join(lines)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda m: _lines(m, lambda ls: ls.__setitem__(5, ls[5].replace(b"u_1", b"u_2"))),
     ["event at seq 105 was altered"]),
    (lambda m: _lines(m, lambda ls: ls.pop(7)), ["event at seq 107 is missing"]),
    (lambda m: _lines(m, lambda ls: ls.pop(99)), ["event at seq 199 is missing"]),
    (lambda m: _lines(m, lambda ls: ls.insert(0, ls[3])),
     ["event at seq 100 was altered"]),
])
def test_alterations_inside_the_range_are_named(exported, change, expected):
    _, path, key = exported
    check = check_bundle(_rewrite(path, change), [key])
    assert check.problems[: len(expected)] == expected


def test_a_forged_proof_or_checkpoint_is_refused(exported):
    _, path, key = exported

    def drop_leaf(members):
        proof = json.loads(members["proof.json"])
        proof["leaf_hashes"].pop()
        members["proof.json"] = json.dumps(proof).encode()

    def resign(members):
        members["checkpoint"] = members["checkpoint"].replace(b"300", b"301")

    for change in (drop_leaf, resign):
        check = check_bundle(_rewrite(path, change), [key])
        assert not check.ok


def test_only_the_trusted_key_counts(exported):
    _, path, _ = exported
    _, stranger = generate_key("someone.else/trailseal")
    check = check_bundle(path.read_bytes(), [stranger])
    assert not check.ok and "proof does not hold" in check.problems[0]
    result = CliRunner().invoke(app, ["verify-bundle", str(path), "--key", stranger])
    assert result.exit_code == 1


def test_garbage_is_a_message_not_a_traceback(tmp_path, exported):
    _, _, key = exported
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    check = check_bundle(junk.read_bytes(), [key])
    assert check.problems and check.problems[0].startswith("not a readable bundle")
    missing = CliRunner().invoke(app, ["verify-bundle", str(tmp_path / "nope.zip"), "--key", key])
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_keygen_writes_once(tmp_path):
    out = tmp_path / "log.key"
    made = CliRunner().invoke(app, ["keygen", "-o", str(out), "--name", "audit.test/trailseal"])
    assert made.exit_code == 0, made.output
    assert out.read_text().startswith("PRIVATE+KEY+audit.test/trailseal+")
    assert (out.stat().st_mode & 0o777) == 0o600
    assert made.output.strip().splitlines()[-1].startswith("audit.test/trailseal+")
    again = CliRunner().invoke(app, ["keygen", "-o", str(out)])
    assert again.exit_code == 1 and "never overwritten" in again.output


def test_export_of_an_unknown_range_is_a_message(exported, settings, monkeypatch):
    tenant, path, _ = exported
    result = CliRunner().invoke(app, [
        "export", "--tenant", tenant.name, "--bundle", str(path.with_name("empty.zip")),
        "--since", "2030-01-01T00:00:00Z", "--data-dir", str(settings.data_dir),
    ])
    assert result.exit_code == 1 and "no events in that range" in result.output
    bad = CliRunner().invoke(app, ["export", "--tenant", tenant.name, "--bundle", "x.zip",
                                   "--since", "yesterday"])
    assert bad.exit_code == 1 and "RFC 3339" in bad.output
