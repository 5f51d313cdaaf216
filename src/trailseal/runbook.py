"""The runbook of one tenant's log, generated from what is live: the event schema, the
retention in force, the roles and their grants, row-level security and append-only
triggers as the catalog has them, the signing keys and witnesses, the last verification,
and a mapping of each control to SOC 2, ISO 27001, HIPAA and PCI DSS requirements with
the evidence that shows it.

Nothing here is written by hand about the database: grants come from the ACLs of
``pg_class``, ``pg_attribute`` and ``pg_proc`` (``aclexplode``), RLS from ``pg_class`` and
``pg_policies``, triggers from ``pg_trigger``, so a table added without RLS, or a grant
made outside the migrations, shows up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection

from trailseal.archive.policy import Policy, policy_for
from trailseal.errors import NotFound
from trailseal.model import event_json_schema
from trailseal.runtime import origin_host, witness
from trailseal.settings import Settings
from trailseal.status import last_run, latest_checkpoint_info, witnessed_status
from trailseal.store import SCHEMA, Role, scoped
from trailseal.tenants import list_tenants

# (requirement, what trailseal does, evidence): one row per requirement, in this order.
CONTROLS: tuple[tuple[str, str, str], ...] = (
    ("SOC 2 CC7.2",
     "Monitors the logging itself for anomalies: alerts when the sequencer stalls, a "
     "checkpoint goes stale, the witness is unreachable or a verification fails; "
     "`verify` detects tampering and `selfaudit` detects changes that never reached the log.",
     "metric `trailseal_alert`, `/readyz`; table `verify_runs`; commands `trailseal verify`, "
     "`trailseal selfaudit`; docs/operations.md"),
    ("ISO 27001:2022 A.8.15",
     "Produces, stores and protects logs of activities: events are append-only (triggers), "
     "tenant-isolated (RLS), hash-chained, in a Merkle tree with signed checkpoints, "
     "witnessed outside the database and archived write-once.",
     "tables `events`, `tiles`, `checkpoints` and their triggers (below); "
     "`trailseal verify --archive`; docs/integrity.md, docs/archive.md"),
    ("HIPAA 164.312(b)",
     "Audit controls: records and lets authorised staff examine activity; every read, "
     "search and export of the log is itself recorded in the tenant's log.",
     "`GET /v1/events`, the console at `/ui/`, `audit.*` meta-audit events, "
     "`trailseal export --bundle`; docs/meta-audit.md, docs/querying.md"),
    ("PCI DSS v4 10.2",
     "Each event records the user (actor), the type of event (action), date and time "
     "(occurred_at, received_at), success or failure (outcome), origin (context.ip, "
     "service) and the affected resource (target); reads of the log are logged.",
     "the event schema (above), `trailseal schema`, schema/event-v1.schema.json; "
     "meta-audit events; docs/api.md"),
    ("PCI DSS v4 10.3",
     "Logs are protected from destruction and modification: separate database roles, RLS "
     "with FORCE, append-only triggers, signed checkpoints copied to a write-once witness, "
     "segments in WORM storage (S3 Object Lock, COMPLIANCE mode); changes are detected by "
     "recomputation.",
     "roles, grants, RLS and triggers (above); `trailseal verify`; "
     "TRAILSEAL_ARCHIVE_URL; docs/database.md, docs/deploy.md"),
    ("PCI DSS v4 10.4",
     "Logs can be reviewed daily and automatically: search and timelines in the console, "
     "a SIEM feed (OCSF or syslog) for automated review, alerts on the pipeline.",
     "console `/ui/`, `GET /v1/stream`, `trailseal forward`, metric `trailseal_alert`; "
     "docs/siem.md, docs/console.md"),
    ("PCI DSS v4 10.5",
     "History is retained per policy, at least 12 months with the latest 3 months "
     "immediately available (hot in PostgreSQL); deletion only after archive and "
     "verification, never under a legal hold.",
     "table `retention_policies` (the retention above), `segments`, `legal_holds`; "
     "`trailseal retention run`, `trailseal hold list`; docs/archive.md"),
    ("PCI DSS v4 10.6",
     "Times are recorded in UTC at millisecond precision; `received_at` comes from the "
     "server's clock only. Clock synchronisation (NTP/chrony) is the hosts' duty.",
     "columns `occurred_at`, `received_at` of `events`; docs/deploy.md (time sync)"),
    ("PCI DSS v4 10.7",
     "Failures of the logging are detected and reported promptly: sequencer stalls, stale "
     "checkpoints, witness failures, failed verifications; events refused or lost on the "
     "way are found by the self-audit.",
     "metric `trailseal_alert` (sequencer_stalled, checkpoint_stale, witness_unreachable, "
     "verify_failed); dead rows of `trailseal_outbox`; `trailseal selfaudit`; "
     "docs/operations.md"),
)

_ROLE_PATTERN = "trailseal\\_%"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _schema_section() -> list[str]:
    schema = event_json_schema()
    defs, required = schema.get("$defs", {}), set(schema.get("required", ()))
    rows = []
    for name, spec in schema["properties"].items():
        ref = spec.get("$ref") or next(
            (s["$ref"] for s in spec.get("anyOf", ()) if "$ref" in s), None)
        inner = defs.get(ref.rsplit("/", 1)[1], {}) if ref else {}
        fields = ", ".join(inner.get("properties", {}))
        description = spec.get("description") or inner.get("description") or ""
        rows.append((f"`{name}`", "yes" if name in required else "no",
                     description.split("\n")[0], fields))
    return ["## Event schema (version 1)", "",
            "Server-set fields besides: `tenant` (from the API key), `received_at`, `seq`, "
            "`leaf_hash`, `chain_hash`.", "",
            *_table(("field", "required", "meaning", "sub-fields"), rows)]


async def _retention(conn: AsyncConnection, tenant: str, settings: Settings) -> list[str]:
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT set_at FROM trailseal.retention_policies WHERE tenant = %s"
            " ORDER BY set_at DESC LIMIT 1", (tenant,))
        own = await cur.fetchone()
        policy: Policy = await policy_for(conn, tenant, settings.retention_preset)
        cur = await conn.execute(
            "SELECT h.id, h.target_type, h.target_id, h.reason, h.created_at"
            " FROM trailseal.legal_holds h WHERE h.tenant = %s AND NOT EXISTS (SELECT FROM"
            " trailseal.legal_hold_releases r WHERE r.tenant = h.tenant AND r.hold_id = h.id)"
            " ORDER BY h.created_at", (tenant,))
        holds = await cur.fetchall()
        cur = await conn.execute(
            "SELECT count(*), max(last_seq) FROM trailseal.segments WHERE tenant = %s",
            (tenant,))
        segments = await cur.fetchone()
    origin = (f"set {own[0].isoformat()}" if own else
              "not configured for this tenant; the default preset "
              "(TRAILSEAL_RETENTION_PRESET) applies")
    meets = policy.retain_days >= 365 and policy.hot_days >= 90
    lines = ["## Retention and tiers", "",
             *_table(("", ""), [
                 ("policy", f"{policy.preset} ({origin})"),
                 ("hot (PostgreSQL)", f"{policy.hot_days} days"),
                 ("warm (object storage, queryable)", f"until day {policy.warm_days}"),
                 ("cold (archive storage class)", f"until day {policy.retain_days}"),
                 ("deleted after", f"{policy.retain_days} days"),
                 ("PCI DSS 10.5.1 (12 months, 3 immediately available)",
                  "met" if meets else "not met by this policy"),
                 ("archive store", _store(settings)),
                 ("sealed segments", f"{segments[0]}, up to seq {segments[1]}"
                  if segments and segments[0] else "none yet"),
             ])]
    if holds:
        lines += ["Active legal holds:", "", *_table(
            ("id", "scope", "reason", "placed"),
            [(h[0], f"{h[1]}:{h[2]}" if h[1] else "whole tenant", h[3], h[4].isoformat())
             for h in holds])]
    else:
        lines += ["No active legal holds.", ""]
    return lines


def _store(settings: Settings) -> str:
    if settings.archive_url is None:
        return f"local write-once folder {settings.data_dir / 'archive'}"
    parts = urlsplit(settings.archive_url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


async def _rows(conn: AsyncConnection, query: str, params: Sequence[Any] = ()) -> list[Any]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def _roles(conn: AsyncConnection) -> list[str]:
    roles = await _rows(conn, "SELECT r.rolname, r.rolcanlogin, r.rolbypassrls, r.rolsuper,"
                        " coalesce((SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname)"
                        " FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
                        " WHERE m.member = r.oid), '')"
                        " FROM pg_roles r WHERE r.rolname LIKE %s ORDER BY 1", (_ROLE_PATTERN,))
    tables = await _rows(conn, """
        SELECT g.rolname, n.nspname || '.' || c.relname,
               string_agg(DISTINCT a.privilege_type, ', ' ORDER BY a.privilege_type)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        JOIN pg_roles g ON g.oid = a.grantee
        WHERE g.rolname LIKE %s GROUP BY 1, 2 ORDER BY 1, 2""", (_ROLE_PATTERN,))
    columns = await _rows(conn, """
        SELECT g.rolname, n.nspname || '.' || c.relname,
               string_agg(a.privilege_type || ' (' || t.attname || ')', ', '
                          ORDER BY a.privilege_type, t.attname)
        FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(t.attacl) a JOIN pg_roles g ON g.oid = a.grantee
        WHERE g.rolname LIKE %s GROUP BY 1, 2 ORDER BY 1, 2""", (_ROLE_PATTERN,))
    routines = await _rows(conn, """
        SELECT g.rolname, n.nspname || '.' || p.proname
               || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               string_agg(DISTINCT a.privilege_type, ', '),
               CASE WHEN p.prosecdef THEN 'SECURITY DEFINER' ELSE '' END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        JOIN pg_roles g ON g.oid = a.grantee
        WHERE g.rolname LIKE %s GROUP BY 1, 2, 4 ORDER BY 1, 2""", (_ROLE_PATTERN,))
    lines = ["## Roles and grants", "",
             "The runtime roles (from `pg_roles`); the service takes one per transaction with "
             "`SET LOCAL ROLE`.", "",
             *_table(("role", "can log in", "bypasses RLS", "superuser", "member of"),
                     [(f"`{r[0]}`", _yes(r[1]), _yes(r[2]), _yes(r[3]), r[4]) for r in roles])]
    lines += ["Table privileges (from the ACLs in `pg_class`; a table without one has its "
              "owner's default privileges):", "",
              *_table(("role", "table", "privileges"),
                      [(f"`{r[0]}`", f"`{r[1]}`", r[2]) for r in tables])]
    if columns:
        lines += ["Column privileges (from `pg_attribute`):", "",
                  *_table(("role", "table", "privileges"),
                          [(f"`{r[0]}`", f"`{r[1]}`", r[2]) for r in columns])]
    lines += ["Routine privileges (from `pg_proc`):", "",
              *_table(("role", "routine", "privileges", ""),
                      [(f"`{r[0]}`", f"`{r[1]}`", r[2], r[3]) for r in routines])]
    return lines


def _yes(value: bool) -> str:
    return "yes" if value else "no"


async def _rls(conn: AsyncConnection) -> list[str]:
    tables = await _rows(conn, """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               coalesce((SELECT string_agg(p.policyname || ' (' || p.cmd || ' to '
                                           || array_to_string(p.roles, ',') || ')', '; '
                                           ORDER BY p.policyname)
                         FROM pg_policies p
                         WHERE p.schemaname = n.nspname AND p.tablename = c.relname), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1""", (SCHEMA,))
    lines = ["## Row-level security", "",
             "Every table of the `trailseal` schema (from `pg_class` and `pg_policies`). A "
             "tenant table must have RLS enabled and forced; the others hold no tenant's "
             "data.", "",
             *_table(("table", "RLS", "forced", "policies"),
                     [(f"`{SCHEMA}.{t[0]}`", "on" if t[1] else "**off**",
                       "yes" if t[2] else "**no**", t[3] or "none") for t in tables])]
    return lines


_TRIGGER_STATE = {"O": "enabled", "A": "enabled (always)", "R": "replica only",
                  "D": "**disabled**"}


async def _triggers(conn: AsyncConnection) -> list[str]:
    triggers = await _rows(conn, """
        SELECT c.relname, t.tgname, t.tgenabled::text, p.proname
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1, 2""", (SCHEMA,))
    return ["## Append-only and other triggers", "",
            "From `pg_trigger`: UPDATE, DELETE and TRUNCATE are refused by these on the log's "
            "tables.", "",
            *_table(("table", "trigger", "state", "function"),
                    [(f"`{SCHEMA}.{t[0]}`", t[1], _TRIGGER_STATE.get(str(t[2]), t[2]), t[3])
                     for t in triggers])]


async def _keys(conn: AsyncConnection, tenant: str, settings: Settings) -> list[str]:
    keys = await _rows(conn, "SELECT verifier_key, created_at FROM trailseal.log_keys"
                       " ORDER BY created_at")
    checkpoint = await latest_checkpoint_info(conn, tenant)
    folder = witness(settings).folder
    witnessed = None if folder is None else await witnessed_status(conn, folder, tenant)
    key_file = settings.signing_key_file or settings.data_dir / "log.key"
    witness_url = urlsplit(settings.witness_url) if settings.witness_url else None
    rows = [
        ("log origin", f"{origin_host(settings)}/trailseal/{tenant}"),
        ("signing key file (sequencer and archiver only)", str(key_file)),
        ("witness folder (write-once)", str(settings.witness_dir or
                                            settings.data_dir / "witness")),
        ("witness URL", f"{witness_url.scheme}://{witness_url.hostname}{witness_url.path}"
         if witness_url else "none"),
        ("latest checkpoint", f"size {checkpoint.size}, {checkpoint.created_at.isoformat()}"
         if checkpoint else "none yet"),
        ("newest witnessed checkpoint", "none" if witnessed is None else
         f"size {witnessed.size}, " + {True: "matches the database", False:
                                         "**differs from the database**",
                                         None: "**not in the database**"}[
                                             witnessed.matches_database]),
    ]
    return ["## Signing keys and witnesses", "", *_table(("", ""), rows),
            "Verifier keys checkpoints have been signed with (table `log_keys`; the key id "
            "is the second `+` field):", "",
            *_table(("verifier key", "first used"),
                    [(f"`{k[0]}`", k[1].isoformat()) for k in keys])]


async def _verification(conn: AsyncConnection, tenant: str) -> list[str]:
    run = await last_run(conn, tenant)
    if run is None:
        return ["## Last verification", "",
                "Never verified: run `trailseal verify --tenant " + tenant + "`.", ""]
    result = "ok" if run.ok else f"**{run.finding_kind} at seq {run.finding_seq}**: {run.detail}"
    return ["## Last verification", "", *_table(("", ""), [
        ("finished", run.finished_at.isoformat()), ("result", result),
        ("events", run.events), ("checkpoints", run.checkpoints),
        ("witnessed checkpoints", run.witnessed), ("from seq", run.from_seq)])]


def _controls() -> list[str]:
    return ["## Control mapping", "",
            *_table(("requirement", "what trailseal does", "evidence"),
                    [(f"**{r}**", what, evidence) for r, what, evidence in CONTROLS])]


async def build_runbook(
    conn: AsyncConnection, tenant: str, settings: Settings, now: datetime | None = None
) -> str:
    """The runbook of ``tenant`` as Markdown. ``conn`` is an autocommit connection that
    may read the catalog and act as the runtime roles (the owner's or a superuser's)."""
    if tenant not in await list_tenants(conn):
        raise NotFound(f"no tenant {tenant!r}")
    now = now or datetime.now(UTC)
    lines = [f"# Runbook: audit log of tenant `{tenant}`", "",
             f"Generated by `trailseal runbook` at {now.isoformat(timespec='seconds')} from "
             "the live database and settings. Regenerate it rather than editing it.", "",
             *_schema_section(), *await _retention(conn, tenant, settings),
             *await _roles(conn), *await _rls(conn), *await _triggers(conn),
             *await _keys(conn, tenant, settings),
             *await _verification(conn, tenant), *_controls()]
    return "\n".join(lines).rstrip("\n") + "\n"
