"""The committed JSON Schema is exactly what the models generate."""

import json
from pathlib import Path

from trailseal.model import event_json_schema

SCHEMA_FILE = Path(__file__).parent.parent / "schema" / "event-v1.schema.json"


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == event_json_schema(), (
        "schema/event-v1.schema.json is stale: run `make schema` and commit it"
    )


def test_schema_names_the_contract_fields() -> None:
    schema = event_json_schema()
    assert set(schema["properties"]) == {
        "id", "occurred_at", "actor", "action", "target", "changes", "context", "outcome",
        "metadata",
    }
    assert set(schema["required"]) == {"actor", "action", "target"}
    assert schema["properties"]["action"]["pattern"] == r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
