"""The ``trailseal`` command line's application: every command group registered."""

from __future__ import annotations

import typer

from trailseal.cli import (
    admin,
    archive,
    brokers,
    forward,
    integrity,
    pipeline,
    runbook,
    selfaudit,
    service,
)

app = typer.Typer(
    name="trailseal",
    help="trailseal: a self-hosted, tamper-evident audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
service.register(app)
admin.register(app)
integrity.register(app)
pipeline.register(app)
brokers.register(app)
forward.register(app)
archive.register(app)
selfaudit.register(app)
runbook.register(app)
