"""Every setting and every command is documented."""

from pathlib import Path

import typer

from trailseal.cli import app
from trailseal.settings import Settings

DOCS = Path(__file__).parent.parent / "docs"


def _commands(group: typer.Typer, prefix: str = "") -> list[str]:
    names = [f"{prefix}{c.name or c.callback.__name__}" for c in group.registered_commands]
    for sub in group.registered_groups:
        names += _commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return names


def test_every_setting_is_documented():
    text = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`TRAILSEAL_{name.upper()}`" in text, name


def test_every_command_is_documented():
    text = (DOCS / "cli.md").read_text()
    commands = _commands(app)
    assert len(commands) >= 9
    for command in commands:
        assert f"`trailseal {command}" in text, command
