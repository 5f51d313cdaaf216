"""``trailseal runbook``: generated from the live catalog, so what it says about tables,
RLS and grants is what the database holds — including a table added without RLS."""

from __future__ import annotations

import re

import psycopg
import pytest
from typer.testing import CliRunner

from trailseal.cli import app
from trailseal.runbook import CONTROLS

REQUIREMENTS = ("SOC 2 CC7.2", "ISO 27001:2022 A.8.15", "HIPAA 164.312(b)",
                *(f"PCI DSS v4 10.{n}" for n in range(2, 8)))


@pytest.fixture
def env(own_database, tmp_path):
    return {"TRAILSEAL_DATABASE_URL": own_database, "TRAILSEAL_DATA_DIR": str(tmp_path),
            "TRAILSEAL_LOG_ORIGIN": "audit.test"}


def _run(env, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _runbook(env, tmp_path, tenant: str) -> str:
    out = tmp_path / "runbook.md"
    _run(env, "runbook", "--tenant", tenant, "-o", str(out))
    return out.read_text()


def _row(text: str, *cells: str) -> bool:
    """Whether a Markdown table row starts with ``cells``."""
    prefix = "| " + " | ".join(cells) + " |"
    return any(line.startswith(prefix) for line in text.splitlines())


def _cells(text: str, *first: str) -> list[str]:
    """The cells of the table row that starts with ``first``; empty if none."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and cells[: len(first)] == list(first):
            return cells
    return []


def test_runbook_describes_the_live_database(env, own_database, tmp_path):
    _run(env, "tenant", "create", "acme")
    text = _runbook(env, tmp_path, "acme")
    assert "not configured for this tenant" in text

    with psycopg.connect(own_database, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'trailseal' AND c.relkind IN ('r', 'p')").fetchall()
        grants = conn.execute(
            "SELECT grantee, table_schema || '.' || table_name,"
            " string_agg(privilege_type, ', ' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE grantee LIKE 'trailseal\\_%'"
            " GROUP BY 1, 2").fetchall()
        roles = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'trailseal\\_%'")]
    assert len(tables) > 15 and grants
    for name, rls, forced in tables:
        assert _row(text, f"`trailseal.{name}`", "on" if rls else "**off**",
                    "yes" if forced else "**no**"), name
    for role, table, privileges in grants:
        shown = _cells(text, f"`{role}`", f"`{table}`")
        assert shown, (role, table)
        # information_schema does not list PostgreSQL 17's MAINTAIN; the ACL does.
        assert set(shown[2].split(", ")) - {"MAINTAIN"} == set(privileges.split(", "))
    for role in roles:
        assert _row(text, f"`{role}`"), role
    assert _row(text, "`trailseal.events`", "events_append_only", "enabled (always)")
    assert _row(text, "`trailseal_ingest`", "`trailseal.event_ids`", "SELECT (id)")

    for requirement in REQUIREMENTS:
        assert _row(text, f"**{requirement}**"), requirement
    assert [c[0] for c in CONTROLS] == list(REQUIREMENTS)
    assert "Never verified" in text


def test_a_table_without_rls_and_a_new_grant_show_up(env, own_database, tmp_path):
    _run(env, "tenant", "create", "acme")
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE trailseal.notes (tenant text, body text)")
        conn.execute("GRANT SELECT, UPDATE ON trailseal.notes TO trailseal_reader")
        conn.execute("ALTER TABLE trailseal.events DISABLE TRIGGER events_append_only")
    text = _runbook(env, tmp_path, "acme")
    assert _row(text, "`trailseal.notes`", "**off**", "**no**", "none")
    assert _cells(text, "`trailseal_reader`", "`trailseal.notes`")[2] == "SELECT, UPDATE"
    assert _row(text, "`trailseal.events`", "events_append_only", "**disabled**")


def test_runbook_names_the_tenants_retention_and_last_verification(env, tmp_path):
    _run(env, "tenant", "create", "clinic")
    _run(env, "retention", "set", "--tenant", "clinic", "--preset", "hipaa")
    _run(env, "keygen", "-o", str(tmp_path / "log.key"))
    result = CliRunner().invoke(app, ["verify", "--tenant", "clinic"], env=env)
    assert result.exit_code == 0, result.output
    text = _runbook(env, tmp_path, "clinic")
    assert re.search(r"\| policy \| hipaa \(set \d{4}-", text)
    assert _row(text, "hot (PostgreSQL)", "90 days")
    assert _row(text, "deleted after", "2192 days")
    assert _row(text, "PCI DSS 10.5.1 (12 months, 3 immediately available)", "met")
    assert _row(text, "result", "ok")
    assert "## Last verification" in text and "Never verified" not in text


def test_unknown_tenant_fails(env, tmp_path):
    result = CliRunner().invoke(app, ["runbook", "--tenant", "nobody", "-o",
                                      str(tmp_path / "r.md")], env=env)
    assert result.exit_code == 1 and "no tenant" in result.output
