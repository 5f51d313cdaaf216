"""The SIEM feed: GET /v1/stream in OCSF and RFC 5424 syslog, the signed cursor, the
OCSF mapping, hostile values kept to one line, tenant isolation."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from tests.support import Tenant, an_event
from trailseal.reading.export import JSON_COLUMNS, flatten
from trailseal.reading.siem import SD_ID, Entry, classify, ocsf_event, sd_value, syslog_line

HOSTILE = [
    "line\nbreak", "carriage\rreturn", "\r\n<13>1 2026-01-01T00:00:00Z forged - - - - x",
    "close]bracket", 'a "quoted" value', "back\\slash", "\\u2028 written out", "tab\there",
    "sep\u2028arator", "para\u2029graph", "next\x85line", "del\x7fete", "bell\x07", "a=b c",
    "\u00e9t\u00e9 \u2603", "]\"\\",
]
LINE = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (.*)", re.S)


def parse_structured_data(text: str) -> tuple[str, dict[str, str], str]:
    """A reference reader of one SD-ELEMENT (RFC 5424 §6.3) followed by MSG: undoes the
    three escapes of §6.3.3 and the \\uXXXX form trailseal writes for control characters."""
    assert text.startswith("[")
    end = text.index(" ") if " " in text else text.index("]")
    sd_id, i, params = text[1:end], end, {}
    while text[i] != "]":
        assert text[i] == " ", text[i:]
        eq = text.index("=", i)
        name, i = text[i + 1:eq], eq + 1
        assert text[i] == '"'
        i += 1
        value: list[str] = []
        while text[i] != '"':
            if text[i] == "\\" and text[i + 1] in '"\\]':
                value.append(text[i + 1])
                i += 2
            elif text[i] == "\\" and text[i + 1] == "u":
                value.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
            else:
                value.append(text[i])
                i += 1
        params[name] = "".join(value)
        i += 1
    assert text[i + 1] == " "
    return sd_id, params, text[i + 2:]


def _entry(**overrides) -> Entry:
    doc = {
        "id": "01963e1e-8f7a-7cc4-9a4e-7a1f6f0c0001", "tenant": "acme",
        "occurred_at": "2026-03-12T09:00:00.000Z", "received_at": "2026-03-12T09:00:00.125Z",
        "actor": {"type": "user", "id": "u_1"}, "action": "user.login.succeeded",
        "target": {"type": "user", "id": "u_1"}, "changes": {}, "context": {},
        "outcome": {"status": "success"}, "metadata": {},
    }
    doc.update(overrides)
    canonical = json.dumps(doc, ensure_ascii=False, sort_keys=True,
                           separators=(",", ":")).encode()
    return Entry(7, canonical, hashlib.sha256(b"\x00" + canonical).digest(), bytes(32), doc)


@pytest.mark.parametrize("value", [*HOSTILE, "nul\x00byte"], ids=repr)
def test_a_hostile_value_stays_on_one_line_and_reads_back(value):
    entry = _entry(actor={"type": "user", "id": value, "name": value},
                   target={"type": "doc", "id": "d", "name": value},
                   context={"user_agent": value}, metadata={"v": value})
    line = syslog_line(entry, "audit.test")
    assert len(line.splitlines()) == 1 and "\n" not in line and "\r" not in line
    assert not [c for c in line if c in "\x00\x85\u2028\u2029" or ord(c) < 0x20]
    match = LINE.fullmatch(line)
    assert match, line
    sd_id, params, msg = parse_structured_data(match[7])
    assert sd_id == SD_ID
    assert params["actor.id"] == value and params["actor.name"] == value
    assert params["target.name"] == value and params["context.user_agent"] == value
    expected = {k: v for k, v in flatten(entry.view()).items() if v and k not in JSON_COLUMNS}
    assert params == expected
    assert msg.startswith("\ufeff")
    assert json.loads(msg[1:]) == entry.document


def test_sd_values_escape_exactly_what_rfc_5424_names():
    assert sd_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert sd_value("x\ny") == "x\\u000ay"
    assert sd_value("plain text, = and [ too") == "plain text, = and [ too"


def test_syslog_header():
    line = syslog_line(_entry(outcome={"status": "failure"}, action="user.login.failed"),
                       "audit host\x00")
    pri, timestamp, host, app, procid, msgid, _ = LINE.fullmatch(line).groups()
    assert int(pri) == 13 * 8 + 4  # log audit, warning
    assert (timestamp, host, app, procid, msgid) == (
        "2026-03-12T09:00:00.000Z", "audithost", "trailseal", "-", "user.login.failed")
    assert LINE.fullmatch(syslog_line(_entry(), "h"))[1] == str(13 * 8 + 6)
    long_action = "a" * 40 + ".done"
    assert LINE.fullmatch(syslog_line(_entry(action=long_action), "h"))[6] == "a" * 32


@pytest.mark.parametrize(
    ("action", "class_uid", "activity_id"),
    [
        ("user.login.succeeded", 3002, 1),
        ("auth.login.failed", 3002, 1),
        ("user.logout", 3002, 2),
        ("auth.session.sign_out", 3002, 2),
        ("auth.token.refreshed", 3002, 99),
        ("user.created", 3001, 1),
        ("account.enabled", 3001, 2),
        ("user.password.changed", 3001, 3),
        ("user.password.reset", 3001, 4),
        ("user.disabled", 3001, 5),
        ("account.deleted", 3001, 6),
        ("user.role.granted", 3001, 7),
        ("role.permission.revoked", 3001, 8),
        ("user.locked", 3001, 9),
        ("user.mfa.enabled", 3001, 10),
        ("user.mfa.disabled", 3001, 11),
        ("user.role.updated", 3001, 99),
        ("user.profile.viewed", 6003, 2),
        ("invoice.created", 6003, 1),
        ("report.exported", 6003, 2),
        ("settings.updated", 6003, 3),
        ("project.deleted", 6003, 4),
        ("deploy.started", 6003, 99),
        ("audit.events.exported", 6003, 2),
    ],
)
def test_ocsf_classes(action, class_uid, activity_id):
    assert classify(action) == (class_uid, activity_id)


def test_ocsf_event_shape():
    entry = _entry(action="user.login.failed",
                   actor={"type": "user", "id": "u_9", "name": "Eve"},
                   context={"ip": "203.0.113.9", "request_id": "r-1", "correlation_id": "c-1",
                            "session_id": "s-1", "user_agent": "curl/8"},
                   outcome={"status": "failure", "error_code": "bad_password",
                            "reason": "wrong"})
    event = ocsf_event(entry)
    assert (event["category_uid"], event["class_uid"], event["activity_id"]) == (3, 3002, 1)
    assert event["type_uid"] == 300201 and event["class_name"] == "Authentication"
    assert (event["status_id"], event["status"], event["severity_id"]) == (2, "Failure", 2)
    assert (event["status_code"], event["status_detail"]) == ("bad_password", "wrong")
    assert event["time"] == 1773306000000
    assert event["actor"]["user"] == {"uid": "u_9", "name": "Eve", "type": "user", "type_id": 1}
    assert event["actor"]["session"] == {"uid": "s-1"}
    assert event["src_endpoint"] == {"ip": "203.0.113.9"}
    assert event["user"] == {"uid": "u_1", "type": "user"}
    meta = event["metadata"]
    assert meta["product"]["name"] == "trailseal" and meta["version"].startswith("1.")
    assert (meta["uid"], meta["sequence"], meta["log_name"]) == (entry.document["id"], 7, "acme")
    assert meta["correlation_uid"] == "c-1" and meta["logged_time"] == 1773306000125
    assert event["raw_data"].encode() == entry.canonical
    api = ocsf_event(_entry(action="project.deleted"))
    assert api["class_uid"] == 6003 and api["category_uid"] == 6 and api["type_uid"] == 600304
    assert api["resources"] == [{"uid": "u_1", "type": "user"}] and "user" not in api
    assert (api["status_id"], api["severity_id"]) == (1, 1)


# --- over HTTP -----------------------------------------------------------------------


def _post(client, tenant: Tenant, events: list[dict]) -> None:
    r = client.post("/v1/events?wait=sequenced", json={"events": events},
                    headers=tenant.auth("ingest"))
    assert r.status_code == 201, r.text


def _stream(client, tenant: Tenant, **params):
    r = client.get("/v1/stream", params=params, headers=tenant.auth("read"))
    assert r.status_code == 200, r.text
    return r


def test_the_feed_pages_through_the_log_in_seq_order(client, tenant):
    first = _stream(client, tenant).json()
    assert first["events"] == [] and first["next_cursor"]
    events = [an_event(action=a) for a in ("user.login.succeeded", "project.created",
                                           "user.role.granted", "project.deleted", "x.y")]
    _post(client, tenant, events)
    page = _stream(client, tenant, cursor=first["next_cursor"], limit=2).json()
    got = page["events"]
    while True:
        page = _stream(client, tenant, cursor=page["next_cursor"], limit=2).json()
        if not page["events"]:
            break
        got += page["events"]
    ours = [e for e in got if not e["message"].startswith("audit.")]
    assert [e["metadata"]["uid"] for e in ours] == [e["id"] for e in events]
    seqs = [e["metadata"]["sequence"] for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e["type_uid"] for e in ours] == [300201, 600301, 300107, 600304, 600399]
    for event in ours:  # a SIEM can check each event against its leaf hash
        leaf = hashlib.sha256(b"\x00" + event["raw_data"].encode()).hexdigest()
        assert leaf == event["unmapped"]["leaf_hash"]
    # An empty answer still carries a cursor, and it resumes at the same place.
    again = _stream(client, tenant, cursor=page["next_cursor"]).json()
    assert [e for e in again["events"] if not e["message"].startswith("audit.")] == []


def test_syslog_framing_is_one_line_per_event_and_the_cursor_in_a_header(client, tenant):
    events = [an_event(actor={"type": "user", "id": value, "name": value},
                       target={"type": "doc", "id": "d", "name": value})
              for value in HOSTILE]
    _post(client, tenant, events)
    r = _stream(client, tenant, format="syslog", limit=1000)
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["trailseal-next-cursor"]
    lines = r.text.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == len(events)
    for line, value in zip(lines, HOSTILE, strict=True):
        _, params, msg = parse_structured_data(LINE.fullmatch(line)[7])
        assert params["actor.id"] == value and params["target.name"] == value
        assert json.loads(msg[1:])["actor"]["name"] == value
    # The same events in both formats. (Not always the same cursor: the second answer may
    # already reach past the record of the first read, which the feed leaves out.)
    ocsf = _stream(client, tenant, limit=1000).json()["events"]
    seqs = [int(parse_structured_data(LINE.fullmatch(x)[7])[1]["seq"]) for x in lines]
    assert [e["metadata"]["sequence"] for e in ocsf] == seqs


def test_the_feed_leaves_out_only_its_own_reads(client, tenant):
    _post(client, tenant, [an_event()])
    _stream(client, tenant)
    client.get("/v1/export", headers=tenant.auth("export"))
    deadline = time.monotonic() + 30
    while True:
        logged = client.get("/v1/events", params={"action": "audit.*"},
                            headers=tenant.auth("read")).json()["events"]
        actions = {e["action"] for e in logged}
        if {"audit.events.streamed", "audit.events.exported"} <= actions:
            break
        assert time.monotonic() < deadline, actions
        time.sleep(0.05)
    fed = {e["message"] for e in _stream(client, tenant, limit=1000).json()["events"]}
    assert "audit.events.exported" in fed and "audit.events.streamed" not in fed


def test_a_cursor_is_bound_to_its_tenant(client, tenant, other_tenant):
    _post(client, tenant, [an_event(actor={"type": "user", "id": "alice-of-a"})])
    _post(client, other_tenant, [an_event(actor={"type": "user", "id": "bob-of-b"})])
    mine = _stream(client, tenant, limit=1000).json()
    assert "bob-of-b" not in json.dumps(mine) and other_tenant.name not in json.dumps(mine)
    theirs = _stream(client, other_tenant, limit=1000).json()
    assert "alice-of-a" not in json.dumps(theirs) and tenant.name not in json.dumps(theirs)
    r = client.get("/v1/stream", params={"cursor": mine["next_cursor"]},
                   headers=other_tenant.auth("read"))
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert tenant.name not in r.text and "seq" not in problem["detail"]
    assert problem["errors"][0]["path"] == "query.cursor"
    forged = mine["next_cursor"][:-2] + ("AA" if mine["next_cursor"][-2:] != "AA" else "BB")
    for bad in (forged, "nonsense", "x" * 200):
        r = client.get("/v1/stream", params={"cursor": bad}, headers=tenant.auth("read"))
        assert r.status_code == 422 and r.json()["detail"] == problem["detail"]


@pytest.mark.parametrize(
    ("params", "path"),
    [({"format": "cef"}, "query.format"), ({"limit": 0}, "query.limit"),
     ({"limit": 1001}, "query.limit")],
)
def test_bad_parameters(client, tenant, params, path):
    r = client.get("/v1/stream", params=params, headers=tenant.auth("read"))
    assert r.status_code == 422 and path in [e["path"] for e in r.json()["errors"]]


def test_the_feed_needs_the_read_scope(client, tenant):
    assert client.get("/v1/stream").status_code == 401
    for scope in ("ingest", "export", "admin"):
        assert client.get("/v1/stream", headers=tenant.auth(scope)).status_code == 403
