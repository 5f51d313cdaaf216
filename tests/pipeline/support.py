"""Helpers of the pipeline tests."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from trailseal import ingest


def outbox(url: str, schema: str = "public") -> list[dict[str, Any]]:
    """The events in the outbox (dead ones too), in id order."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            sql.SQL("SELECT event FROM {} ORDER BY id").format(
                sql.Identifier(schema, "trailseal_outbox")
            )
        )
        return [row[0] for row in cur]


def assert_acceptable(events: list[dict[str, Any]]) -> None:
    """The service's own checks accept every one of ``events``."""
    ingest.prepare(events, "check", ingest.now())
