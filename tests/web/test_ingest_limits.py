"""The batch limits of ``POST /v1/events``: at most 1,000 events and 5 MiB a request,
refused with 413 before an oversized body is buffered whole."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import an_event
from trailseal import ingest
from trailseal.ingest import MAX_BATCH_EVENTS, MAX_BODY_BYTES
from trailseal.integrity import canonicalize
from trailseal.model import MAX_CANONICAL_BYTES, EventV1, stored_document

PROBLEM = "https://trailseal.dev/problems/"
CHUNK = 64 * 1024


def too_large(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = response.json()
    assert doc["type"] == PROBLEM + "too-large"
    assert doc["status"] == 413
    assert doc["title"] == "Payload too large"
    assert doc["instance"] == "/v1/events"
    assert "errors" not in doc
    return doc


def padded(size: int) -> bytes:
    """A valid one-event body of exactly ``size`` bytes (trailing whitespace is JSON)."""
    body = json.dumps(an_event()).encode()
    return body + b" " * (size - len(body))


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


def test_1000_events_are_accepted(client, tenant):
    events = [an_event() for _ in range(MAX_BATCH_EVENTS)]
    r = client.post("/v1/events", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [e["id"] for e in events], "duplicates": []}


def test_1001_events_are_413(client, tenant):
    events = [an_event() for _ in range(MAX_BATCH_EVENTS + 1)]
    r = client.post("/v1/events", json={"events": events}, headers=tenant.auth())
    doc = too_large(r)
    assert "1000" in doc["detail"]
    # Nothing of it was written: the same ids are fresh afterwards.
    r = client.post("/v1/events", json={"events": events[:3]}, headers=tenant.auth())
    assert r.json()["accepted"] == [e["id"] for e in events[:3]]


def event_of_canonical_size(tenant: str, size: int) -> dict[str, Any]:
    """An event whose stored canonical form will be exactly ``size`` bytes. The server
    fills in received_at and occurred_at, whose text has a fixed length."""
    event = an_event(metadata={"s": ""})
    document = stored_document(
        EventV1.model_validate(event),
        tenant=tenant,
        event_id=uuid.UUID(str(event["id"])),
        received_at=ingest.now(),
    )
    event["metadata"] = {"s": "x" * (size - len(canonicalize(document)))}
    return event


def test_canonical_form_of_exactly_65535_bytes_is_accepted(client, tenant):
    event = event_of_canonical_size(tenant.name, MAX_CANONICAL_BYTES)
    r = client.post("/v1/events", json=event, headers=tenant.auth())
    assert r.status_code == 202, r.text


def test_canonical_form_of_65536_bytes_is_422(client, tenant):
    events = [an_event(), event_of_canonical_size(tenant.name, MAX_CANONICAL_BYTES + 1)]
    r = client.post("/v1/events", json={"events": events}, headers=tenant.auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc = r.json()
    assert doc["type"] == PROBLEM + "invalid-input"
    assert [(e["index"], e["path"]) for e in doc["errors"]] == [(1, "")]
    assert str(MAX_CANONICAL_BYTES + 1) in doc["errors"][0]["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_5_mib_passes_the_size_check(client, tenant, chunked):
    body = padded(MAX_BODY_BYTES)
    content = chunks(body) if chunked else body
    headers = {**tenant.auth(), "Content-Type": "application/json"}
    r = client.post("/v1/events", content=content, headers=headers)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_5_mib_is_413(client, tenant, chunked):
    body = padded(MAX_BODY_BYTES + 1)
    content = chunks(body) if chunked else body
    headers = {**tenant.auth(), "Content-Type": "application/json"}
    r = client.post("/v1/events", content=content, headers=headers)
    too_large(r)
    sent = r.request.headers
    if chunked:
        assert "content-length" not in sent
        assert sent["transfer-encoding"] == "chunked"
    else:
        assert sent["content-length"] == str(MAX_BODY_BYTES + 1)


# The two tests below never finish sending their body: the 413 can only arrive if the
# server refuses the request without waiting for (and buffering) the whole of it.


def _status_of_unfinished(client: httpx.Client, head: bytes, partial_body: bytes) -> bytes:
    """Send a request head and part of its body, then read the response head."""
    with socket.create_connection((client.base_url.host, client.base_url.port), 10) as sock:
        sock.settimeout(10)
        sock.sendall(head + partial_body)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            assert data, "connection closed before a response"
            received += data
    return received.split(b"\r\n\r\n", 1)[0]


def _head(client: httpx.Client, token: str, framing: str) -> bytes:
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: {client.base_url.host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def test_declared_oversize_body_is_refused_before_it_is_sent(client, tenant):
    head = _head(client, tenant.token, f"Content-Length: {MAX_BODY_BYTES + 1}")
    response_head = _status_of_unfinished(client, head, b"")
    assert response_head.startswith(b"HTTP/1.1 413 ")
    assert b"content-type: application/problem+json" in response_head.lower()


def test_chunked_body_is_refused_once_it_passes_the_limit(client, tenant):
    head = _head(client, tenant.token, "Transfer-Encoding: chunked")
    body = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in chunks(b'{"events": [' + b" " * MAX_BODY_BYTES)
    )  # no closing zero-length chunk: the body never ends
    response_head = _status_of_unfinished(client, head, body)
    assert response_head.startswith(b"HTTP/1.1 413 ")
    assert b"content-type: application/problem+json" in response_head.lower()
