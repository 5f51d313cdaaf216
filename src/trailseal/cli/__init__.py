"""The ``trailseal`` command line: one module per command group, gathered in
``trailseal.cli.application``.

Importing this package is light on purpose: a process that ``trailseal verify`` starts
as a worker imports the program's main module, the console script, which imports only
this; the commands are imported when ``main`` runs.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    """Console entry point."""
    from trailseal.cli.application import app

    app()


def __getattr__(name: str) -> Any:
    # ``from trailseal.cli import app`` keeps working, importing the commands then.
    if name == "app":
        from trailseal.cli.application import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
