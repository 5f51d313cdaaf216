"""The S3 store: a bucket with Object Lock enabled (and so versioning), every object put
with ``ObjectLockMode=COMPLIANCE``, a retain-until date and a SHA-256 checksum.

In COMPLIANCE mode nobody, the account's root included, can delete a locked version or
shorten its retention before the date; S3 enforces it. Some S3-compatible services
enforce less (moto, which the tests use, refuses the delete but lets a retention be
shortened), so trailseal itself never asks for a shorter one: every retention it sets
goes through :func:`trailseal.archive.worm.extended` first, which refuses before any
request is made.

The cold tier is a new version of the object, the same bytes with the colder storage
class (``GLACIER`` or ``DEEP_ARCHIVE``), keeping the lock, the legal hold and the
retain-until date (the old version stays locked until its own date, and is deleted with
the rest when retention ends). Reading a cold object needs
a restore first, which S3 does in hours; ``get`` says so rather than wait.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from trailseal.archive.worm import (
    ObjectExists,
    ObjectLocked,
    ObjectMissing,
    WormError,
    extended,
)

STANDARD = "STANDARD"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    """Write-once objects under ``prefix`` in an Object Lock bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str = "",
                 cold_storage_class: str = "GLACIER") -> None:
        if cold_storage_class not in ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"):
            raise WormError(f"{cold_storage_class!r} is not a cold S3 storage class")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cold_storage_class = cold_storage_class

    @classmethod
    def connect(cls, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                cold_storage_class: str = "GLACIER", **session: Any) -> S3Store:
        """A store over ``bucket`` with boto3's usual credentials (or ``session``'s)."""
        client = boto3.client("s3", endpoint_url=endpoint_url, **session)
        return cls(client, bucket, prefix, cold_storage_class)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise WormError(f"S3 HEAD {key}: {exc}") from None
        return head

    def put_new(self, key: str, data: bytes, *, retain_until: datetime,
                legal_hold: bool = False) -> bool:
        head = self._head(key)
        if head is not None:
            if self.get(key) == data:
                return False
            raise ObjectExists(f"{key} exists with other bytes; it is never overwritten")
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        extra: dict[str, Any] = {}
        if legal_hold:
            extra["ObjectLockLegalHoldStatus"] = "ON"
        try:
            # IfNoneMatch makes the "never overwrite" atomic where S3 supports it.
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain_until,
                StorageClass=STANDARD, IfNoneMatch="*", **extra,
            )
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                raise ObjectExists(f"{key} was written meanwhile") from None
            raise WormError(f"S3 PUT {key}: {exc}") from None
        return True

    def get(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                            ChecksumMode="ENABLED")
        except ClientError as exc:
            code = _code(exc)
            if code in ("NoSuchKey", "404"):
                raise ObjectMissing(f"no object {key}") from None
            if code == "InvalidObjectState":
                raise WormError(f"{key} is in the cold tier: restore it first") from None
            raise WormError(f"S3 GET {key}: {exc}") from None
        data: bytes = answer["Body"].read()
        expected = answer.get("ChecksumSHA256")
        if expected and base64.b64decode(expected) != hashlib.sha256(data).digest():
            raise WormError(f"{key}: the bytes read differ from their SHA-256 checksum")
        return data

    def retain_until(self, key: str) -> datetime:
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no object {key}")
        until: datetime | None = head.get("ObjectLockRetainUntilDate")
        if until is None:
            raise WormError(f"{key} carries no retention: is Object Lock on for the bucket?")
        return until.astimezone(UTC)

    def extend_retention(self, key: str, retain_until: datetime) -> None:
        until = extended(self.retain_until(key), retain_until)
        self.client.put_object_retention(
            Bucket=self.bucket, Key=self._key(key),
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
        )

    def set_legal_hold(self, key: str, on: bool) -> None:
        try:
            self.client.put_object_legal_hold(
                Bucket=self.bucket, Key=self._key(key),
                LegalHold={"Status": "ON" if on else "OFF"},
            )
        except ClientError as exc:
            raise WormError(f"S3 legal hold of {key}: {exc}") from None

    def legal_hold(self, key: str) -> bool:
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no object {key}")
        return bool(head.get("ObjectLockLegalHoldStatus") == "ON")

    def make_cold(self, key: str) -> None:
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no object {key}")
        if head.get("StorageClass", STANDARD) == self.cold_storage_class:
            return
        current = self.retain_until(key)
        data = self.get(key)
        extra: dict[str, Any] = (
            {"ObjectLockLegalHoldStatus": "ON"}
            if head.get("ObjectLockLegalHoldStatus") == "ON" else {}
        )
        # A new version of the same bytes in the colder class: S3 (and moto) want a
        # checksum with every locked write, which a server-side copy does not carry.
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
            StorageClass=self.cold_storage_class, ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=extended(current, current), **extra,
        )

    def is_cold(self, key: str) -> bool:
        head = self._head(key)
        return head is not None and head.get("StorageClass", STANDARD) != STANDARD

    def delete(self, key: str, *, now: datetime) -> None:
        """Delete every version of the object; S3 refuses a locked or held one."""
        versions = self.client.list_object_versions(Bucket=self.bucket, Prefix=self._key(key))
        found = [v for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
                 if v["Key"] == self._key(key)]
        if not found:
            raise ObjectMissing(f"no object {key}")
        for version in found:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key),
                                          VersionId=version["VersionId"])
            except ClientError as exc:
                if _code(exc) in ("AccessDenied", "InvalidRequest", "ObjectLocked"):
                    raise ObjectLocked(f"S3 refused to delete {key}: {exc}") from None
                raise WormError(f"S3 DELETE {key}: {exc}") from None


def create_bucket(client: Any, bucket: str) -> None:
    """Create ``bucket`` with Object Lock enabled (which turns versioning on)."""
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
