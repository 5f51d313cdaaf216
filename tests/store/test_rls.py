"""Isolation: tenant A never sees, counts, or infers tenant B's events.

Row-level security is enabled and forced on every tenant table, a transaction that names
no tenant sees no rows, the roles hold exactly the privileges their jobs need, and API
keys are stored only as hashes.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.store.conftest import TwoLogs
from tests.store.scoping import (
    ARCHIVER,
    INGEST,
    OWNER,
    READER,
    ROLES,
    RUNTIME_ROLES,
    SEQUENCER,
    acting,
    refusal,
    rows,
)
from tests.support import Tenant, run
from trailseal.tenants import create_key, revoke_key

TENANT_TABLES = (
    "tenants", "api_keys", "event_ids", "inbox", "events", "log_heads", "tiles", "checkpoints",
    "sources", "verify_runs", "segments", "segment_events", "retention_policies",
    "legal_holds", "legal_hold_releases", "sequencer_leases",
)

# Exactly what each runtime role is granted; anything more is a leak waiting to happen.
GRANTS = {
    INGEST: {"event_ids": {"INSERT", "SELECT(id)"}, "inbox": {"INSERT"}},
    SEQUENCER: {
        "tenants": {"SELECT"},
        "inbox": {"SELECT", "DELETE"},
        "events": {"SELECT", "INSERT"},
        "log_heads": {"SELECT", "INSERT", "UPDATE"},
        "tiles": {"SELECT", "INSERT"},
        "checkpoints": {"SELECT", "INSERT"},
        "log_keys": {"SELECT", "INSERT"},
        "sources": {"SELECT", "INSERT", "UPDATE"},
        "sequencer_leases": {"SELECT", "INSERT", "UPDATE"},
        "sequencer_members": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    },
    READER: {
        "tenants": {"SELECT"},
        "api_keys": {"SELECT"},
        "event_ids": {"SELECT"},
        "events": {"SELECT"},
        "log_heads": {"SELECT"},
        "tiles": {"SELECT"},
        "checkpoints": {"SELECT"},
        "log_keys": {"SELECT"},
        "sources": {"SELECT"},
        "verify_runs": {"SELECT"},
        "segments": {"SELECT"},
        "segment_events": {"SELECT"},
        "retention_policies": {"SELECT"},
        "legal_holds": {"SELECT"},
        "legal_hold_releases": {"SELECT"},
        "sequencer_leases": {"SELECT"},
        "sequencer_members": {"SELECT"},
    },
    ARCHIVER: {
        "tenants": {"SELECT"},
        "events": {"SELECT"},
        "checkpoints": {"SELECT"},
        "log_heads": {"SELECT"},
        "segments": {"SELECT", "INSERT"},
        "segment_events": {"SELECT", "INSERT"},
        "retention_policies": {"SELECT"},
        "legal_holds": {"SELECT"},
        "legal_hold_releases": {"SELECT"},
    },
}
FUNCTION_GRANTS = {
    "authenticate": {INGEST, READER},
    "create_events_partition": {SEQUENCER},
    "pending_tenants": {SEQUENCER},
    "drop_events_partition": {ARCHIVER},
    "drop_events_partition_checked": set(),  # only through drop_events_partition
    "log_health": {READER, SEQUENCER},
}

_EMPTY_JSON = "convert_to('{}', 'UTF8')"
_LEAF = f"sha256(decode('00', 'hex') || {_EMPTY_JSON})"
# One row of each writable tenant table, for tenant %(tenant)s.
_INSERTS = {
    "inbox": (
        "INSERT INTO trailseal.inbox (tenant, id, occurred_at, received_at, actor_type,"
        " actor_id, action, target_type, target_id, outcome, canonical, leaf_hash)"
        " VALUES (%(tenant)s, gen_random_uuid(), now(), now(), 'user', 'u_1', 'user.login',"
        f" 'user', 'u_1', 'success', {_EMPTY_JSON}, {_LEAF})"
    ),
    "event_ids": (
        "INSERT INTO trailseal.event_ids (tenant, id, received_at)"
        " VALUES (%(tenant)s, gen_random_uuid(), now())"
    ),
    "events": (
        "INSERT INTO trailseal.events (tenant, seq, id, occurred_at, received_at, actor_type,"
        " actor_id, action, target_type, target_id, outcome, canonical, leaf_hash, chain_hash)"
        " VALUES (%(tenant)s, 1000, gen_random_uuid(), now(), now(), 'user', 'u_1',"
        f" 'user.login', 'user', 'u_1', 'success', {_EMPTY_JSON}, {_LEAF}, {_LEAF})"
    ),
    "log_heads": (
        "INSERT INTO trailseal.log_heads (tenant, size, chain_hash)"
        f" VALUES (%(tenant)s, 0, {_LEAF})"
    ),
    "sources": (
        "INSERT INTO trailseal.sources (tenant, source, high_water, max_seen, first_seen_at,"
        " last_seen_at) VALUES (%(tenant)s, 'probe', 0, 0, now(), now())"
    ),
}


def _count(conn: psycopg.Connection, table: str, where: str = "true", params: Any = None) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(
        sql.Identifier("trailseal", table)
    )
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def _tenant_tables(conn: psycopg.Connection) -> dict[str, tuple[bool, bool]]:
    """Every table of the schema with a ``tenant`` column, plus ``tenants``: name ->
    (row security enabled, forced)."""
    return {
        name: (enabled, forced)
        for name, enabled, forced in rows(
            conn,
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
            " WHERE c.relnamespace = 'trailseal'::regnamespace AND c.relkind IN ('r', 'p')"
            " AND (c.relname = 'tenants' OR EXISTS (SELECT FROM pg_attribute a"
            "      WHERE a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped))",
        )
    }


def _partitions(conn: psycopg.Connection) -> set[str]:
    return {
        name
        for (name,) in rows(
            conn,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'trailseal.events'::regclass",
        )
    }


# -- Row-level security everywhere --------------------------------------------------------


def test_row_security_is_enabled_and_forced_on_every_tenant_table(
    su: psycopg.Connection,
) -> None:
    found = _tenant_tables(su)
    partitions = _partitions(su)
    assert partitions, "events has no partitions"
    assert set(found) >= {*TENANT_TABLES, *partitions}
    assert {name: flags for name, flags in found.items() if flags != (True, True)} == {}


def test_every_table_is_a_tenant_table_or_known_to_be_global(su: psycopg.Connection) -> None:
    # A new table without a tenant column must be added here on purpose, not by accident.
    tables = {
        name
        for (name,) in rows(
            su,
            "SELECT relname FROM pg_class WHERE relnamespace = 'trailseal'::regnamespace"
            " AND relkind IN ('r', 'p', 'v', 'm', 'f')",
        )
    }
    # log_keys holds public verifier keys, shared by every tenant; sequencer_members the
    # heartbeats of sequencer processes, which serve every tenant.
    assert tables - set(_tenant_tables(su)) == {
        "schema_migrations", "log_keys", "sequencer_members"}


def test_every_tenant_table_has_policies_naming_the_tenant(su: psycopg.Connection) -> None:
    policies = rows(
        su,
        "SELECT c.relname, pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p"
        " JOIN pg_class c ON c.oid = p.polrelid"
        " WHERE c.relnamespace = 'trailseal'::regnamespace AND p.polroles = '{0}'",
    )
    # The policy that applies to every role, table by table; partitions have none, so
    # reached directly they admit no one (a superuser aside).
    assert {table for table, _ in policies} == set(TENANT_TABLES)
    for table, qual in policies:
        assert "current_tenant()" in qual, (table, qual)


# -- No tenant, no rows --------------------------------------------------------------------


def _readable(role: str, table: str) -> bool:
    return role == OWNER or any(p.startswith("SELECT") for p in GRANTS[role].get(table, ()))


_NO_TENANT_CASES = [
    (role, table)
    for role in ROLES
    for table in ("events", "inbox", "event_ids", "api_keys", "log_heads", "sources")
    # The owner administers keys, so it alone sees them all (policy api_key_catalog).
    if (role, table) != (OWNER, "api_keys")
]


@pytest.mark.parametrize("setting", ["unset", "empty"])
@pytest.mark.parametrize(("role", "table"), _NO_TENANT_CASES)
def test_without_a_tenant_no_row_is_visible(
    su: psycopg.Connection, logs: TwoLogs, role: str, table: str, setting: str
) -> None:
    with su.transaction(force_rollback=True):
        # The inbox is emptied by the running sequencer; an uncommitted row stays put.
        su.execute(_INSERTS["inbox"], {"tenant": logs.a.name})
        assert _count(su, table) > 0, "nothing to hide: the test would prove nothing"
        su.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        if setting == "empty":
            su.execute("SELECT set_config('trailseal.tenant', '', true)")
        else:
            assert su.execute("SELECT current_setting('trailseal.tenant', true)").fetchone() == (
                None,
            )
        if _readable(role, table):
            assert _count(su, table) == 0
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                _count(su, table)


# -- One tenant never sees, counts or infers another's rows --------------------------------


@pytest.mark.parametrize("role", [READER, SEQUENCER, OWNER])
def test_a_tenant_counts_only_its_own_events(
    su: psycopg.Connection, logs: TwoLogs, role: str
) -> None:
    b = {"b": logs.b.name}
    with acting(su, role, logs.a.name):
        assert _count(su, "events") == len(logs.a_ids)
        assert _count(su, "events", "tenant = %(b)s", b) == 0
        assert _count(su, "events", "id = ANY(%(ids)s::uuid[])", {"ids": logs.b_ids}) == 0
        assert _count(su, "log_heads", "tenant = %(b)s", b) == 0
        assert _count(su, "sources", "tenant = %(b)s", b) == 0
        if role == READER:  # the owner and the sequencer serve every tenant: they list all
            assert _count(su, "tenants") == 1
    with acting(su, None):  # and the superuser confirms B's rows are there to be hidden
        assert _count(su, "events", "tenant = %(b)s", b) == len(logs.b_ids)


@pytest.mark.parametrize("role", [READER, SEQUENCER])
def test_a_failing_condition_cannot_probe_another_tenants_rows(
    su: psycopg.Connection, logs: TwoLogs, role: str
) -> None:
    # Were the caller's condition tested before the policy, B's rows would divide by zero
    # and the error would tell A they exist. The policy's quals must come first.
    probe = "CASE WHEN tenant = %(b)s THEN 1 / (seq - seq) ELSE 1 END = 1"
    with acting(su, role, logs.a.name):
        assert _count(su, "events", probe, {"b": logs.b.name}) == len(logs.a_ids)


def test_an_id_another_tenant_used_is_new_to_this_one(
    su: psycopg.Connection, logs: TwoLogs
) -> None:
    # Dedupe is per tenant, so "duplicate" never reveals that B sent an id.
    theirs = logs.b_ids[0]
    with acting(su, INGEST, logs.a.name):
        fresh = su.execute(
            "INSERT INTO trailseal.event_ids (tenant, id, received_at)"
            " VALUES (%s, %s, now()) ON CONFLICT DO NOTHING RETURNING id",
            (logs.a.name, theirs),
        ).fetchall()
    assert fresh == [(uuid.UUID(theirs),)]


@pytest.mark.parametrize(
    ("role", "table"),
    [
        (INGEST, "inbox"),
        (INGEST, "event_ids"),
        (SEQUENCER, "events"),
        (SEQUENCER, "log_heads"),
        (SEQUENCER, "sources"),
    ],
)
def test_a_row_for_another_tenant_is_refused(
    su: psycopg.Connection, logs: TwoLogs, role: str, table: str
) -> None:
    error = refusal(su, role, logs.a.name, _INSERTS[table], {"tenant": logs.b.name})
    assert (error.diag.message_primary or "").startswith(
        f'new row violates row-level security policy for table "{table}"'
    )


@pytest.mark.parametrize(
    ("role", "table"),
    [
        (INGEST, "inbox"),
        (INGEST, "event_ids"),
        (SEQUENCER, "events"),
        (SEQUENCER, "log_heads"),
        (SEQUENCER, "sources"),
    ],
)
def test_a_row_for_its_own_tenant_is_accepted(
    su: psycopg.Connection, logs: TwoLogs, role: str, table: str
) -> None:
    # The counterpart of the refusal above: the same statement works for the right tenant.
    # (log_heads already holds A's head, so a fresh tenant name stands in there.)
    tenant = logs.a.name if table != "log_heads" else "fresh"
    with acting(su, role, tenant):
        assert su.execute(_INSERTS[table], {"tenant": tenant}).rowcount == 1


# -- Privileges ------------------------------------------------------------------------------

_DENIED = {
    "ingest selects events": (INGEST, "SELECT count(*) FROM trailseal.events"),
    "ingest selects the inbox": (INGEST, "SELECT count(*) FROM trailseal.inbox"),
    "ingest deletes the inbox": (INGEST, "DELETE FROM trailseal.inbox"),
    "ingest reads key hashes": (INGEST, "SELECT token_hash FROM trailseal.api_keys"),
    "ingest reads other columns of event_ids": (
        INGEST,
        "SELECT received_at FROM trailseal.event_ids",
    ),
    "reader inserts events": (READER, _INSERTS["events"]),
    "reader inserts into the inbox": (READER, _INSERTS["inbox"]),
    "reader inserts event ids": (READER, _INSERTS["event_ids"]),
    "reader updates a head": (READER, "UPDATE trailseal.log_heads SET size = 0"),
    "reader inserts a source": (READER, _INSERTS["sources"]),
    "sequencer deletes a source": (SEQUENCER, "DELETE FROM trailseal.sources"),
    "ingest reads sources": (INGEST, "SELECT count(*) FROM trailseal.sources"),
    "sequencer updates events": (SEQUENCER, "UPDATE trailseal.events SET actor_id = 'x'"),
    "sequencer reads key hashes": (SEQUENCER, "SELECT token_hash FROM trailseal.api_keys"),
    "sequencer inserts into the inbox": (SEQUENCER, _INSERTS["inbox"]),
    "archiver inserts events": (ARCHIVER, _INSERTS["events"]),
    "archiver reads key hashes": (ARCHIVER, "SELECT token_hash FROM trailseal.api_keys"),
    "archiver sets a policy": (
        ARCHIVER,
        "INSERT INTO trailseal.retention_policies VALUES (%(tenant)s, now(), 'soc2', 365,"
        " 90, 365)",
    ),
    "archiver releases a hold": (
        ARCHIVER,
        "INSERT INTO trailseal.legal_hold_releases VALUES (%(tenant)s, gen_random_uuid(),"
        " 'r', now())",
    ),
    "reader inserts a segment event": (
        READER,
        "INSERT INTO trailseal.segment_events VALUES (%(tenant)s, 0, 'verified', now())",
    ),
}


@pytest.mark.parametrize(("role", "statement"), _DENIED.values(), ids=_DENIED.keys())
def test_a_role_cannot_step_outside_its_job(
    su: psycopg.Connection, logs: TwoLogs, role: str, statement: str
) -> None:
    error = refusal(su, role, logs.a.name, statement, {"tenant": logs.a.name})
    assert (error.diag.message_primary or "").startswith("permission denied for table")


def _grants(conn: psycopg.Connection, role: str) -> dict[str, set[str]]:
    """What ``role`` (or PUBLIC, for ``"public"``) is granted on the schema's relations,
    table by table and column by column."""
    if role == "public":
        grantee = 0
    else:
        found_oid = rows(conn, "SELECT %s::regrole::oid", (role,))
        grantee = found_oid[0][0]
    found: dict[str, set[str]] = {}
    for name, privilege in rows(
        conn,
        "SELECT c.relname, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
        " WHERE c.relnamespace = 'trailseal'::regnamespace AND a.grantee = %(grantee)s"
        " UNION ALL"
        " SELECT c.relname, a.privilege_type || '(' || att.attname || ')'"
        " FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid,"
        " aclexplode(att.attacl) a"
        " WHERE c.relnamespace = 'trailseal'::regnamespace AND a.grantee = %(grantee)s",
        {"grantee": grantee},
    ):
        found.setdefault(name, set()).add(privilege)
    return found


@pytest.mark.parametrize("role", [*RUNTIME_ROLES, "public"])
def test_each_role_holds_exactly_the_privileges_of_its_job(
    su: psycopg.Connection, role: str
) -> None:
    assert _grants(su, role) == GRANTS.get(role, {})


def test_security_definer_functions_run_only_for_the_roles_that_need_them(
    su: psycopg.Connection,
) -> None:
    found = rows(
        su,
        "SELECT p.proname, coalesce(array_agg(a.grantee::regrole::text)"
        "   FILTER (WHERE a.grantee <> p.proowner), '{}')"
        " FROM pg_proc p LEFT JOIN LATERAL aclexplode(p.proacl) a ON true"
        " WHERE p.pronamespace = 'trailseal'::regnamespace AND p.prosecdef"
        " GROUP BY p.proname",
    )
    # grantee 0 (PUBLIC) would show as "-": it must not appear; nor may proacl be NULL,
    # which means the default, EXECUTE for PUBLIC.
    assert {name: set(grantees) for name, grantees in found} == FUNCTION_GRANTS


def test_the_roles_cannot_log_in_bypass_security_or_become_each_other(
    su: psycopg.Connection,
) -> None:
    attributes = rows(
        su,
        "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcanlogin FROM pg_roles"
        " WHERE rolname = ANY(%s) ORDER BY rolname",
        (list(ROLES),),
    )
    assert len(attributes) == len(ROLES)
    for name, superuser, bypassrls, createrole, login in attributes:
        assert not (superuser or bypassrls or createrole), name
        if name == OWNER:
            assert not login, "trailseal_owner must be NOLOGIN"
    memberships = rows(
        su,
        "SELECT m.roleid::regrole::text, m.member::regrole::text FROM pg_auth_members m"
        " WHERE m.roleid::regrole::text = ANY(%(roles)s)"
        " AND m.member::regrole::text = ANY(%(roles)s)",
        {"roles": list(ROLES)},
    )
    assert memberships == []


def test_the_owner_owns_every_object_in_the_schema(su: psycopg.Connection) -> None:
    assert rows(
        su, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", ("trailseal",)
    ) == [(OWNER,)]
    strangers = rows(
        su,
        "SELECT relname, relkind, relowner::regrole::text FROM pg_class"
        " WHERE relnamespace = 'trailseal'::regnamespace AND relowner <> %(owner)s::regrole"
        " UNION ALL"
        " SELECT proname, 'function', proowner::regrole::text FROM pg_proc"
        " WHERE pronamespace = 'trailseal'::regnamespace AND proowner <> %(owner)s::regrole",
        {"owner": OWNER},
    )
    assert strangers == []
    tables = rows(
        su,
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'trailseal'::regnamespace"
        " AND relkind IN ('r', 'p')",
    )
    assert tables[0][0] >= len(TENANT_TABLES) + 1


# -- API keys --------------------------------------------------------------------------------


def test_only_a_hash_of_each_token_is_stored(su: psycopg.Connection, tenant: Tenant) -> None:
    tokens = {tenant.token, *tenant.tokens.values()}
    stored = rows(
        su,
        "SELECT k.*, row_to_json(k)::text, k.token_hash FROM trailseal.api_keys k"
        " WHERE tenant = %s",
        (tenant.name,),
    )
    assert len(stored) == len(tokens)
    for row in stored:
        *columns, as_json, digest = row
        for token in tokens:
            assert token not in columns
            assert token not in as_json
            assert token.encode() not in bytes(digest)
    assert {bytes(row[-1]) for row in stored} == {
        hashlib.sha256(t.encode()).digest() for t in tokens
    }


def _authenticate(conn: psycopg.Connection, role: str, token: str) -> list[Any]:
    with acting(conn, role):
        return conn.execute(
            "SELECT tenant, scopes FROM trailseal.authenticate(%s)",
            (hashlib.sha256(token.encode()).digest(),),
        ).fetchall()


@pytest.mark.parametrize("role", [INGEST, READER])
def test_authenticate_answers_only_for_a_live_key(
    su: psycopg.Connection, database_url: str, tenant: Tenant, role: str
) -> None:
    assert _authenticate(su, role, tenant.token) == [
        (tenant.name, ["ingest", "read", "export", "admin"])
    ]
    assert _authenticate(su, role, tenant.token + "x") == []

    async def revoked() -> str:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            key = await create_key(conn, tenant.name, ("read",), name="short-lived")
            await revoke_key(conn, tenant.name, key.key_id)
        return key.token

    assert _authenticate(su, role, run(revoked())) == []


def test_the_sequencer_cannot_authenticate(su: psycopg.Connection, tenant: Tenant) -> None:
    error = refusal(
        su,
        SEQUENCER,
        None,
        "SELECT * FROM trailseal.authenticate(%s)",
        (hashlib.sha256(tenant.token.encode()).digest(),),
    )
    assert (error.diag.message_primary or "").startswith("permission denied for function")
