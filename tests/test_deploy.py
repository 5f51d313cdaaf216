"""The deployment files name only commands, options and settings that exist: every
ExecStart of the systemd units and the container's command parse as a trailseal command
line, and every TRAILSEAL_* name they (and docs/deploy.md) set is a setting."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from trailseal.cli import app
from trailseal.settings import Settings

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# Read by commands as option defaults (relay, forward), not by Settings.
COMMAND_VARIABLES = {"TRAILSEAL_URL", "TRAILSEAL_TOKEN"}


def _unit(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat, as Environment= does)."""
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")  # typer's own click fork: no shared base class


def _check_command(argv: list[str]) -> None:
    """Parse ``argv`` (after the program name) with the real command tree, as the CLI
    would before running it: an unknown command or option raises."""
    command: Any = typer.main.get_command(app)
    args = list(argv)
    while _is_group(command):
        assert args, "a command group needs a command"
        name, *args = args
        assert name in command.commands, name
        command = command.commands[name]
    command.make_context(command.name or "", args, resilient_parsing=False)


def _check_setting(name: str, value: str) -> None:
    assert name.startswith("TRAILSEAL_"), name
    field = name.removeprefix("TRAILSEAL_").lower()
    assert field in Settings.model_fields, name
    if "%" not in value and "$" not in value:  # a systemd specifier is resolved later
        Settings.model_validate({field: value})


def test_there_are_the_three_units():
    assert {u.name for u in UNITS} >= {"trailseal-api.service",
                                        "trailseal-sequencer@.service",
                                        "trailseal-archiver.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_units_run_real_commands_with_real_settings(unit):
    entries = _unit(unit)
    (exec_start,) = entries["ExecStart"]
    program, *argv = shlex.split(exec_start)
    assert program.endswith("/trailseal")
    _check_command(argv)
    for assignment in entries.get("Environment", []):
        for pair in shlex.split(assignment):
            name, _, value = pair.partition("=")
            _check_setting(name, value)
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ReadWritePaths", "User"):
        assert hardening in entries, hardening
    assert entries["ProtectSystem"] == ["strict"]


def test_only_the_signing_processes_get_the_key():
    for unit in UNITS:
        entries = _unit(unit)
        signs = any(c in entries["ExecStart"][0] for c in (" sequencer", " archiver"))
        assert ("LoadCredential" in entries) == signs, unit.name


def test_the_environment_file_example_names_settings():
    for line in (DEPLOY / "systemd" / "trailseal.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            _check_setting(name, value)


def test_the_container_image_runs_a_real_command():
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    instructions = [line.split(None, 1) for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    final = [i for i in instructions if i[0] == "FROM"]
    assert len(final) >= 2, "multi-stage"
    last = {}
    for word, rest in instructions:
        last[word] = rest
    entrypoint, cmd = json.loads(last["ENTRYPOINT"]), json.loads(last["CMD"])
    assert entrypoint == ["trailseal"]
    _check_command(cmd)
    assert last["USER"].split(":")[0] not in ("0", "root")
    copied = {path for word, rest in instructions if word == "COPY" and "--from" not in rest
              for path in rest.split()[:-1]}
    for needed in ("pyproject.toml", "setup.py", "src"):  # what `pip install .` builds from
        assert needed in copied and (ROOT / needed).exists(), needed
    for pair in shlex.split(last["ENV"]):
        name, _, value = pair.partition("=")
        if name.startswith("TRAILSEAL_"):
            _check_setting(name, value)


def test_the_deploy_guide_names_real_settings_and_commands():
    text = (ROOT / "docs" / "deploy.md").read_text()
    for name in set(re.findall(r"\bTRAILSEAL_[A-Z_]+\b", text)) - COMMAND_VARIABLES:
        assert name.removeprefix("TRAILSEAL_").lower() in Settings.model_fields, name
    named = re.findall(r"`trailseal ([a-z-]+)(?: ([a-z-]+))?", text)
    assert named
    for first, second in named:
        command: Any = typer.main.get_command(app)
        assert _is_group(command)
        sub = command.commands.get(first)
        assert sub is not None, first
        if _is_group(sub):
            assert second in sub.commands, f"{first} {second}"
