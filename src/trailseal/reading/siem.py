"""The SIEM feed: a tenant's events after a cursor, in seq order, as OCSF-shaped JSON or
RFC 5424 syslog lines.

The cursor is a seq signed with the server's key and bound to the tenant
(:func:`trailseal.reading.cursor.encode_seq`), so it cannot be edited or replayed for
another tenant. Each answer carries the cursor to resume from, even when it is empty.

The feed leaves out ``audit.events.streamed``, the meta-audit's record of the feed's own
reads: a shipper polling the feed would otherwise be sent the record of its previous poll
on every poll, for ever. Those records stay in the log (and in ``/v1/events``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from trailseal import __version__
from trailseal.reading import cursor
from trailseal.reading.export import JSON_COLUMNS, flatten
from trailseal.store import Role, scoped

MAX_LIMIT = 1000
STREAMED = "audit.events.streamed"
CURSOR_PURPOSE = "stream"
OCSF_VERSION = "1.2.0"
SD_ID = "trailseal@32473"  # 32473: the private enterprise number kept for examples (RFC 5612)
FACILITY = 13  # log audit (RFC 5424, table 1)
APP_NAME = "trailseal"


@dataclass(frozen=True)
class Entry:
    """One event of the log: its seq, canonical bytes, hashes and parsed document."""

    seq: int
    canonical: bytes
    leaf_hash: bytes
    chain_hash: bytes
    document: dict[str, Any]

    def view(self) -> dict[str, Any]:
        """The API form (as ``/v1/events`` answers): document, seq and hex hashes."""
        return {**self.document, "seq": self.seq, "leaf_hash": self.leaf_hash.hex(),
                "chain_hash": self.chain_hash.hex()}


@dataclass(frozen=True)
class Feed:
    """One answer of the feed: the entries from seq ``start`` on, and where to resume."""

    entries: list[Entry]
    start: int
    next: int


def position(key: bytes, tenant: str, after: str | None) -> int:
    """The seq a feed cursor names (0 without one); ``InvalidInput`` for a cursor this
    server did not issue to this tenant."""
    return 0 if after is None else cursor.decode_seq(key, tenant, CURSOR_PURPOSE, after)


def next_cursor(key: bytes, tenant: str, feed: Feed) -> str:
    """The cursor that resumes right after ``feed``."""
    return cursor.encode_seq(key, tenant, CURSOR_PURPOSE, feed.next)


async def read_feed(conn: AsyncConnection, tenant: str, start: int, limit: int) -> Feed:
    """Up to ``limit`` of ``tenant``'s events from seq ``start`` on, in seq order."""
    # One statement, so the page and the head come from one snapshot: when the page is
    # short, every seq up to the head was seen and the next answer may start past it.
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "WITH page AS (SELECT seq, canonical, leaf_hash, chain_hash FROM trailseal.events"
            "   WHERE tenant = %s AND seq >= %s AND action <> %s ORDER BY seq LIMIT %s)"
            " SELECT seq, canonical, leaf_hash, chain_hash, NULL::bigint FROM page"
            " UNION ALL"
            " SELECT NULL, NULL, NULL, NULL, max(seq) FROM trailseal.events WHERE tenant = %s",
            (tenant, start, STREAMED, limit, tenant),
        )
        rows = await cur.fetchall()
    head = next((r[4] for r in rows if r[0] is None), None)
    entries = sorted(
        (
            Entry(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3]), orjson.loads(bytes(r[1])))
            for r in rows if r[0] is not None
        ),
        key=lambda e: e.seq,
    )
    after = entries[-1].seq + 1 if entries else start
    if len(entries) < limit and head is not None:
        after = max(after, head + 1)
    return Feed(entries, start, after)


# --- OCSF ----------------------------------------------------------------------------

AUTHENTICATION, ACCOUNT_CHANGE, API_ACTIVITY = 3002, 3001, 6003
CLASS_NAMES = {AUTHENTICATION: "Authentication", ACCOUNT_CHANGE: "Account Change",
               API_ACTIVITY: "API Activity"}
CATEGORY_NAMES = {3: "Identity & Access Management", 6: "Application Activity"}
ACTIVITY_NAMES = {
    AUTHENTICATION: {1: "Logon", 2: "Logoff", 99: "Other"},
    ACCOUNT_CHANGE: {1: "Create", 2: "Enable", 3: "Password Change", 4: "Password Reset",
                     5: "Disable", 6: "Delete", 7: "Attach Policy", 8: "Detach Policy",
                     9: "Lock", 10: "MFA Factor Enable", 11: "MFA Factor Disable", 99: "Other"},
    API_ACTIVITY: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
}

_LOGON = {"login", "logon", "signin", "sign_in", "authenticated", "authentication"}
_LOGOFF = {"logout", "logoff", "signout", "sign_out"}
_ACCOUNT_SUBJECTS = {"account", "user", "member", "membership", "role", "permission",
                     "group", "api_key", "password", "mfa"}
_READS = {"read", "viewed", "listed", "exported", "downloaded", "searched", "accessed",
          "opened", "queried", "streamed"}
_CREATES = {"created", "added", "inserted", "uploaded", "imported", "issued", "invited",
            "registered"}
_UPDATES = {"updated", "changed", "modified", "edited", "renamed", "moved", "set",
            "replaced"}
_DELETES = {"deleted", "removed", "destroyed", "purged", "erased"}
_POLICY = {"role", "roles", "permission", "permissions", "policy", "group", "membership"}


def _account_activity(parts: list[str]) -> int:
    verb, words = parts[-1], set(parts)
    if "password" in words:
        return 4 if "reset" in words else 3
    if "mfa" in words and verb in {"enabled", "added", "enrolled"}:
        return 10
    if "mfa" in words and verb in {"disabled", "removed"}:
        return 11
    if words & _POLICY and verb in {"granted", "assigned", "added", "attached"}:
        return 7
    if words & _POLICY and verb in {"revoked", "unassigned", "removed", "detached"}:
        return 8
    return {"created": 1, "invited": 1, "registered": 1, "enabled": 2, "activated": 2,
            "unlocked": 2, "restored": 2, "disabled": 5, "deactivated": 5, "suspended": 5,
            "deleted": 6, "removed": 6, "locked": 9}.get(verb, 99)


def classify(action: str) -> tuple[int, int]:
    """``(class_uid, activity_id)`` of an action: logins and logouts (and ``auth.*``)
    are Authentication; changes to accounts, users, roles and permissions are Account
    Change; everything else is API Activity, its activity read from the final verb."""
    parts = action.split(".")
    words = set(parts)
    if words & _LOGOFF:
        return AUTHENTICATION, 2
    if words & _LOGON:
        return AUTHENTICATION, 1
    if parts[0] == "auth":
        return AUTHENTICATION, 99
    verb = parts[-1]
    if parts[0] in _ACCOUNT_SUBJECTS and verb not in _READS:
        return ACCOUNT_CHANGE, _account_activity(parts)
    for activity, verbs in ((1, _CREATES), (2, _READS), (3, _UPDATES), (4, _DELETES)):
        if verb in verbs:
            return API_ACTIVITY, activity
    return API_ACTIVITY, 99


def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


_USER_TYPES = {"user": 1, "system": 3}


def ocsf_event(entry: Entry) -> dict[str, Any]:
    """``entry`` as an OCSF 1.x event of class Authentication, Account Change or API
    Activity, with the original canonical event in ``raw_data``."""
    doc = entry.document
    actor, target = doc["actor"], doc["target"]
    context, outcome = doc.get("context", {}), doc.get("outcome", {})
    class_uid, activity_id = classify(doc["action"])
    category_uid = class_uid // 1000
    failed = outcome.get("status") == "failure"
    activity_name = ACTIVITY_NAMES[class_uid][activity_id]
    event: dict[str, Any] = {
        "category_uid": category_uid,
        "category_name": CATEGORY_NAMES[category_uid],
        "class_uid": class_uid,
        "class_name": CLASS_NAMES[class_uid],
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{CLASS_NAMES[class_uid]}: {activity_name}",
        "severity_id": 2 if failed else 1,
        "severity": "Low" if failed else "Informational",
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "time": _epoch_ms(doc["occurred_at"]),
        "message": doc["action"],
        "actor": {"user": _present(uid=actor["id"], name=actor.get("name"),
                                   type=actor["type"],
                                   type_id=_USER_TYPES.get(actor["type"], 99))},
        "api": _present(
            operation=doc["action"],
            request={"uid": context["request_id"]} if "request_id" in context else None,
            service={"name": context["service"]} if "service" in context else None,
        ),
        "metadata": _present(
            version=OCSF_VERSION,
            product={"name": "trailseal", "vendor_name": "trailseal", "version": __version__},
            uid=doc["id"],
            sequence=entry.seq,
            log_name=doc.get("tenant"),
            logged_time=_epoch_ms(doc["received_at"]),
            correlation_uid=context.get("correlation_id"),
        ),
        "raw_data": entry.canonical.decode(),
        "unmapped": _present(tenant=doc.get("tenant"), target=target,
                             changes=doc.get("changes") or None,
                             metadata=doc.get("metadata") or None,
                             leaf_hash=entry.leaf_hash.hex()),
    }
    event.update(_present(status_code=outcome.get("error_code"),
                          status_detail=outcome.get("reason")))
    endpoint = _present(ip=context.get("ip"))
    if endpoint:
        event["src_endpoint"] = endpoint
    if "user_agent" in context:
        event["http_request"] = {"user_agent": context["user_agent"]}
    if "session_id" in context:
        event["actor"]["session"] = {"uid": context["session_id"]}
    if class_uid in (AUTHENTICATION, ACCOUNT_CHANGE):
        event["user"] = _present(uid=target["id"], name=target.get("name"), type=target["type"])
    else:
        event["resources"] = [_present(uid=target["id"], name=target.get("name"),
                                       type=target["type"])]
    return event


# --- RFC 5424 syslog -----------------------------------------------------------------

# Characters that could end or split a line, or that a terminal would act on.
_BREAKING = {"Cc", "Cs", "Zl", "Zp"}
_MSG_ESCAPES = re.compile("[\x7f-\x9f\u2028\u2029]")


def _escape_char(char: str) -> str:
    return f"\\u{ord(char):04x}"


def sd_value(text: str) -> str:
    """``text`` as an RFC 5424 PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped with a
    backslash (§6.3.3), and every control, surrogate and line or paragraph separator
    written ``\\uXXXX``, so a value can never end the line."""
    out = []
    for char in text:
        if char in '"\\]':
            out.append("\\" + char)
        elif unicodedata.category(char) in _BREAKING:
            out.append(_escape_char(char))
        else:
            out.append(char)
    return "".join(out)


def _header_field(text: str, size: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``size`` long."""
    kept = "".join(c for c in text if 33 <= ord(c) <= 126)[:size]
    return kept or "-"


def _message(entry: Entry) -> str:
    # Canonical JSON already escapes C0 controls; DEL, C1 and the separators it keeps
    # raw are escaped too, which leaves the same JSON value.
    text = entry.canonical.decode()
    return _MSG_ESCAPES.sub(lambda m: _escape_char(m.group()), text)


def syslog_line(entry: Entry, hostname: str) -> str:
    """``entry`` as one RFC 5424 line (no line ending): PRI facility 13 (log audit),
    severity 6 (informational) or 4 (warning) on failure; TIMESTAMP occurred_at; MSGID
    the action; structured data ``[trailseal@32473 ...]`` with the event's scalar fields;
    MSG the event's JSON, UTF-8 with a BOM."""
    doc = entry.document
    severity = 4 if doc.get("outcome", {}).get("status") == "failure" else 6
    flat = flatten(entry.view())
    params = "".join(
        f' {name}="{sd_value(value)}"' for name, value in flat.items()
        if value and name not in JSON_COLUMNS
    )
    return (
        f"<{FACILITY * 8 + severity}>1 {doc['occurred_at']} {_header_field(hostname, 255)}"
        f" {APP_NAME} - {_header_field(doc['action'], 32)} [{SD_ID}{params}]"
        f" \ufeff{_message(entry)}"
    )
