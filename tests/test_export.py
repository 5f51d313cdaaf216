"""Exports: GET /v1/export and `trailseal export --format`: fixed CSV columns, formula
injection, the same bytes from the API and the CLI, scopes, filters, tenant isolation,
constant memory, and the meta-audit of each export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
import tracemalloc
from pathlib import Path

import pytest
from psycopg import AsyncConnection
from typer.testing import CliRunner

from tests.support import Tenant, an_event, make_tenant, run
from trailseal import ingest
from trailseal.cli import app
from trailseal.reading import export
from trailseal.reading.export import COLUMNS, FORMULA_STARTS, export_chunks
from trailseal.reading.query import EventFilter

DOCS = Path(__file__).parent.parent / "docs"
HOSTILE_FIELDS = ("actor.id", "actor.name", "target.id", "target.name", "outcome.reason",
                  "context.user_agent", "context.session_id")


def _post(client, tenant: Tenant, events: list[dict]) -> None:
    for start in range(0, len(events), 1000):
        r = client.post("/v1/events?wait=sequenced", json={"events": events[start:start + 1000]},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201, r.text


def _export(client, tenant: Tenant, fmt: str, **params) -> bytes:
    r = client.get("/v1/export", params={"format": fmt, **params},
                   headers=tenant.auth("export"))
    assert r.status_code == 200, r.text
    return r.content


def _rows(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode(), newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


@pytest.fixture
def seeded(client, tenant) -> tuple[Tenant, list[dict]]:
    events = [
        an_event(action="user.login.succeeded", occurred_at="2026-03-12T09:00:00Z",
                 context={"ip": "203.0.113.7", "request_id": "req-1"}),
        an_event(action="user.role.updated", occurred_at="2026-03-12T09:01:00Z",
                 actor={"type": "user", "id": "alice", "name": "Alice, \"the admin\""},
                 target={"type": "user", "id": "bob", "name": "Bob\nsecond line"},
                 changes={"role": {"before": "viewer", "after": "admin"}},
                 metadata={"ticket": "T-1", "n": 2}),
        an_event(action="report.exported", occurred_at="2026-03-12T09:02:00Z",
                 outcome={"status": "failure", "error_code": "quota", "reason": "too big"}),
    ]
    _post(client, tenant, events)
    return tenant, events


def test_csv_columns_come_from_the_schema_and_are_documented():
    assert COLUMNS[:4] == ("seq", "id", "occurred_at", "received_at")
    assert {"actor.type", "actor.id", "action", "target.id", "context.ip",
            "context.request_id", "outcome.status"} <= set(COLUMNS)
    assert COLUMNS[-4:] == ("changes", "metadata", "leaf_hash", "chain_hash")
    text = (DOCS / "export.md").read_text()
    documented = re.findall(r"^\| \d+ \| `([^`]+)` \|", text, re.M)
    assert tuple(documented) == COLUMNS


def test_csv_export_flattens_events_into_the_fixed_columns(client, seeded):
    tenant, events = seeded
    rows = _rows(_export(client, tenant, "csv"))
    assert [r["id"] for r in rows] == [e["id"] for e in events]  # oldest first
    role = rows[1]
    assert role["actor.name"] == 'Alice, "the admin"'  # commas and quotes survive
    assert role["target.name"] == "Bob\nsecond line"  # so do newlines, inside quotes
    assert json.loads(role["changes"]) == {"role": {"before": "viewer", "after": "admin"}}
    assert json.loads(role["metadata"]) == {"ticket": "T-1", "n": 2}
    assert rows[0]["context.ip"] == "203.0.113.7" and rows[0]["context.request_id"] == "req-1"
    assert rows[0]["actor.name"] == "Alice" and rows[0]["changes"] == "{}"
    assert rows[2]["outcome.status"] == "failure" and rows[2]["outcome.reason"] == "too big"
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["leaf_hash"]) for r in rows)


@pytest.mark.parametrize("start", FORMULA_STARTS, ids=repr)
def test_no_cell_can_start_a_formula(client, tenant, start):
    payload = start + "HYPERLINK(\"http://evil.example\",\"x\")"
    event = an_event(
        actor={"type": "user", "id": payload, "name": payload},
        target={"type": "user", "id": payload, "name": payload},
        context={"user_agent": payload, "session_id": payload},
        outcome={"status": "failure", "reason": payload},
        metadata={"note": payload},
    )
    _post(client, tenant, [event])
    data = _export(client, tenant, "csv")
    cells = [cell for row in csv.reader(io.StringIO(data.decode(), newline="")) for cell in row]
    assert cells and not [c for c in cells if c.startswith(FORMULA_STARTS)]
    (row,) = _rows(data)
    for field in HOSTILE_FIELDS:
        assert row[field] == "'" + payload, field
    # JSON text starts with a brace, and the value inside it is untouched.
    assert json.loads(row["metadata"]) == {"note": payload}


def test_ndjson_and_json_are_the_events_as_the_api_gives_them(client, seeded):
    tenant, _ = seeded
    page = client.get("/v1/events", params={"order": "asc"}, headers=tenant.auth("read"))
    expected = page.json()["events"]
    lines = _export(client, tenant, "ndjson").decode().splitlines()
    assert [json.loads(line) for line in lines] == expected
    whole = _export(client, tenant, "json")
    assert json.loads(whole) == expected
    assert whole.endswith(b"]\n")


def test_headers_name_an_attachment_of_the_right_type(client, seeded):
    tenant, _ = seeded
    for fmt, media in (("csv", "text/csv"), ("ndjson", "application/x-ndjson"),
                       ("json", "application/json")):
        r = client.get("/v1/export", params={"format": fmt}, headers=tenant.auth("export"))
        assert r.headers["content-type"].startswith(media)
        disposition = r.headers["content-disposition"]
        assert re.fullmatch(
            rf'attachment; filename="trailseal-{tenant.name}-\d{{8}}T\d{{6}}Z\.{fmt}"',
            disposition)


def test_an_empty_export_is_still_well_formed(client, tenant):
    assert _export(client, tenant, "json") == b"[]\n"
    assert _export(client, tenant, "ndjson") == b""
    assert _rows(_export(client, tenant, "csv")) == []


def test_export_takes_the_event_filters(client, seeded):
    tenant, events = seeded
    lines = _export(client, tenant, "ndjson", action="user.*").decode().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [events[0]["id"], events[1]["id"]]
    lines = _export(client, tenant, "ndjson", since="2026-03-12T09:01:00Z",
                    outcome="success").decode().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [events[1]["id"]]


@pytest.mark.parametrize(
    ("params", "status", "path"),
    [
        ({"format": "xlsx"}, 422, "query.format"),
        ({"format": "csv", "action": "not an action"}, 422, "query.action"),
        ({"format": "csv", "since": "yesterday"}, 422, "query.since"),
        ({"format": "csv", "ip": "10.0.0.0/99"}, 422, "query.ip"),
    ],
)
def test_bad_parameters_are_problems_naming_them(client, tenant, params, status, path):
    r = client.get("/v1/export", params=params, headers=tenant.auth("export"))
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert path in [e["path"] for e in r.json()["errors"]]


def test_export_needs_the_export_scope(client, tenant):
    assert client.get("/v1/export").status_code == 401
    for scope in ("read", "ingest", "admin"):
        r = client.get("/v1/export", headers=tenant.auth(scope))
        assert r.status_code == 403, scope
        assert r.json()["type"].endswith("/forbidden")
    assert client.get("/v1/export", headers=tenant.auth("export")).status_code == 200


def test_export_never_holds_another_tenants_events(client, seeded, other_tenant):
    tenant, events = seeded
    theirs = [an_event(actor={"type": "user", "id": "mallory"}) for _ in range(3)]
    _post(client, other_tenant, theirs)
    for fmt in ("csv", "ndjson", "json"):
        mine = _export(client, tenant, fmt).decode()
        assert all(e["id"] not in mine for e in theirs) and "mallory" not in mine
        assert other_tenant.name not in mine
        assert all(e["id"] in mine for e in events)


def test_each_export_is_meta_audited_with_its_format_and_count(client, seeded):
    tenant, _ = seeded
    _export(client, tenant, "csv", action="user.*")
    deadline = time.monotonic() + 30
    while True:
        r = client.get("/v1/events", params={"action": "audit.events.exported"},
                       headers=tenant.auth("read"))
        found = r.json()["events"]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, "no audit.events.exported event"
    meta = found[0]["metadata"]
    assert meta["count"] == 2 and meta["completed"] is True
    assert meta["filters"]["format"] == "csv" and meta["filters"]["action"] == ["user.*"]


# --- the command line ----------------------------------------------------------------


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setenv("TRAILSEAL_DATABASE_URL", database_url)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_cli_writes_the_same_bytes_as_the_api(cli, client, seeded, tmp_path, fmt):
    tenant, _ = seeded
    out = tmp_path / f"out.{fmt}"
    done = cli("export", "--tenant", tenant.name, "--format", fmt, "-o", str(out),
               "--action", "user.*")
    assert done.exit_code == 0, done.output
    assert "2 event(s)" in " ".join(done.output.split())
    assert out.read_bytes() == _export(client, tenant, fmt, action="user.*")
    assert not list(tmp_path.glob("*.partial"))


def test_cli_bundle_export_still_works(cli, seeded, tmp_path):
    tenant, _ = seeded
    out = tmp_path / "bundle.zip"
    done = cli("export", "--tenant", tenant.name, "--bundle", str(out))
    assert done.exit_code == 0, done.output
    assert out.exists() and "checkpoint of size" in done.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --bundle"),
        (["--bundle", "b.zip", "--format", "csv", "-o", "x.csv"], "exactly one of --bundle"),
        (["--format", "csv"], "needs -o/--output"),
        (["--bundle", "b.zip", "-o", "x.csv"], "goes with --format"),
        (["--bundle", "b.zip", "--action", "user.*"], "go with --format"),
        (["--format", "csv", "-o", "x.csv", "--action", "no way"], "action"),
        (["--format", "csv", "-o", "x.csv", "--since", "soon"], "--since must be"),
    ],
)
def test_cli_export_errors_are_messages(cli, tenant, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    done = cli("export", "--tenant", tenant.name, *args)
    assert done.exit_code != 0
    assert message in " ".join(done.output.split())
    assert "Traceback" not in done.output
    assert not list(tmp_path.iterdir())


# --- memory --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_tenant(database_url, service_url) -> tuple[Tenant, int, int]:
    """A tenant with LARGE events, the first SMALL of them under their own action."""
    small, large = 2_000, 20_000
    tenant = make_tenant(database_url, "big")
    filler = "x" * 400

    async def go() -> None:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            for start in range(0, large, 1000):
                raw = [an_event(action="small.thing.done" if i < small else "large.thing.done",
                                metadata={"i": i, "filler": filler})
                       for i in range(start, start + 1000)]
                at = ingest.now()
                await ingest.write_inbox(conn, tenant.name, ingest.prepare(raw, tenant.name, at),
                                         at)
            # The service's sequencer takes them from the inbox.
            deadline = time.monotonic() + 120
            while await export.count_events(conn, tenant.name, EventFilter()) < large:
                assert time.monotonic() < deadline, "the events were not sequenced in time"
                await asyncio.sleep(0.1)

    run(go())
    return tenant, small, large


def _peak_bytes(url: str, tenant: str, flt: EventFilter) -> tuple[int, int, int]:
    """Rows, output bytes and the peak of Python allocations while exporting."""

    async def go() -> tuple[int, int, int]:
        rows = 0

        def counted(n: int) -> None:
            nonlocal rows
            rows = n

        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            tracemalloc.start()
            try:
                size = 0
                async for chunk in export_chunks(conn, tenant, flt, "csv", on_row=counted,
                                                 batch=500):
                    size += len(chunk)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        return rows, size, peak

    return run(go())


def test_export_memory_does_not_grow_with_its_size(database_url, big_tenant):
    tenant, small, large = big_tenant
    rows_s, bytes_s, peak_s = _peak_bytes(database_url, tenant.name,
                                          EventFilter(action=("small.thing.done",)))
    rows_l, bytes_l, peak_l = _peak_bytes(database_url, tenant.name, EventFilter())
    assert (rows_s, rows_l) == (small, large)
    assert bytes_l > 9 * bytes_s
    # Ten times the rows, the same memory: the peak is a batch and a chunk, not the data.
    assert peak_l < 1.5 * peak_s + 256 * 1024, (peak_s, peak_l)
    assert peak_l < bytes_l / 8, (peak_l, bytes_l)


def test_openapi_describes_every_parameter_and_error(client):
    spec = client.get("/openapi.json").json()
    for path, scope in (("/v1/export", "export"), ("/v1/stream", "read")):
        operation = spec["paths"][path]["get"]
        assert operation["parameters"]
        for parameter in operation["parameters"]:
            assert parameter.get("description"), (path, parameter["name"])
        for status in ("200", "401", "403", "422"):
            assert operation["responses"][status]["description"], (path, status)
        assert f"`{scope}` scope" in operation["responses"]["403"]["description"]
        for status in ("401", "403", "422"):
            assert "application/problem+json" in operation["responses"][status]["content"]
