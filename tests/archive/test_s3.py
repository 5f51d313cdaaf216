"""The S3 store against a local S3-compatible endpoint (moto's server, real HTTP): every
object locked in COMPLIANCE mode with a SHA-256 checksum; a locked version cannot be
deleted; trailseal never asks for a shorter retention; the cold tier is a storage class."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import free_port
from trailseal.archive.s3 import S3Store, create_bucket
from trailseal.archive.worm import ObjectExists, ObjectLocked, RetentionShortened

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
               "region_name": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3Store:
    bucket = f"trailseal-{secrets.token_hex(4)}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    create_bucket(client, bucket)
    return S3Store.connect(bucket, "archive", endpoint_url=s3_endpoint, **CREDENTIALS)


def _later(days: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def test_an_object_is_locked_in_compliance_mode_with_a_checksum(s3: S3Store):
    until = _later(30)
    assert s3.put_new("t/segments/a.parquet", b"segment bytes", retain_until=until)
    head = s3.client.head_object(Bucket=s3.bucket, Key="archive/t/segments/a.parquet",
                                 ChecksumMode="ENABLED")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    assert head.get("ChecksumSHA256")
    assert s3.get("t/segments/a.parquet") == b"segment bytes"
    assert s3.retain_until("t/segments/a.parquet") == until


def test_an_object_is_never_overwritten(s3: S3Store):
    s3.put_new("k", b"first", retain_until=_later(1))
    assert s3.put_new("k", b"first", retain_until=_later(1)) is False
    with pytest.raises(ObjectExists):
        s3.put_new("k", b"second", retain_until=_later(1))
    assert s3.get("k") == b"first"


def test_s3_refuses_to_delete_a_locked_version(s3: S3Store):
    s3.put_new("k", b"locked", retain_until=_later(30))
    with pytest.raises(ObjectLocked):
        s3.delete("k", now=datetime.now(UTC))
    assert s3.get("k") == b"locked"
    # Straight to S3, around trailseal: refused all the same.
    version = s3.client.list_object_versions(Bucket=s3.bucket)["Versions"][0]["VersionId"]
    with pytest.raises(s3.client.exceptions.ClientError):
        s3.client.delete_object(Bucket=s3.bucket, Key="archive/k", VersionId=version)


def test_a_legal_hold_refuses_deletion_until_released(s3: S3Store):
    s3.put_new("k", b"held", retain_until=_later(1), legal_hold=True)
    assert s3.legal_hold("k")
    with pytest.raises(ObjectLocked):
        s3.delete("k", now=datetime.now(UTC))
    s3.set_legal_hold("k", False)
    assert not s3.legal_hold("k")


def test_trailseal_never_shortens_a_retention(s3: S3Store, monkeypatch):
    until = _later(30)
    s3.put_new("k", b"x", retain_until=until)
    sent: list[str] = []
    monkeypatch.setattr(s3.client, "put_object_retention",
                        lambda **kw: sent.append(kw["Key"]))
    with pytest.raises(RetentionShortened):
        s3.extend_retention("k", until - timedelta(days=1))
    assert sent == []  # refused before any request
    s3.extend_retention("k", until + timedelta(days=1))
    assert sent == ["archive/k"]


def test_a_retention_is_extended(s3: S3Store):
    until = _later(30)
    s3.put_new("k", b"x", retain_until=until)
    s3.extend_retention("k", until + timedelta(days=5))
    assert s3.retain_until("k") == until + timedelta(days=5)


def test_the_cold_tier_is_a_colder_storage_class_with_the_lock_kept(s3: S3Store):
    until = _later(30)
    s3.put_new("k", b"x", retain_until=until)
    assert not s3.is_cold("k")
    s3.make_cold("k")
    assert s3.is_cold("k")
    head = s3.client.head_object(Bucket=s3.bucket, Key="archive/k")
    assert head["StorageClass"] == "GLACIER"
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    with pytest.raises(ObjectLocked):
        s3.delete("k", now=datetime.now(UTC))


def test_the_archiver_seals_into_s3(s3: S3Store, own_database, signer):
    from tests.archive.support import archiver, fill, seal, start_clock
    from tests.support import run
    from trailseal.archive.segments import check_file, manifest_key, open_manifest

    clock = start_clock()
    run(fill(own_database, signer, "acme", 10, clock()))
    assert run(seal(own_database, archiver(s3, signer, clock, max_events=10), "acme")) == 1
    key = "acme/segments/00000000000000000000-00000000000000000009.parquet"
    manifest = open_manifest(s3.get(manifest_key(key)), [signer.verifier()])
    assert len(check_file(s3.get(key), manifest)) == 10
    assert s3.retain_until(key) == datetime.fromisoformat(manifest.retain_until)
    with pytest.raises(ObjectLocked):
        s3.delete(key, now=datetime.now(UTC))
