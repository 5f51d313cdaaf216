"""Every setting and every command is documented, and every link in the docs leads
somewhere."""

import re
from pathlib import Path

import typer

from trailseal.cli import app
from trailseal.settings import Settings

DOCS = Path(__file__).parent.parent / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")


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


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text: lower case, punctuation
    but hyphens dropped, spaces as hyphens, ``-1``, ``-2`` ... on repeats."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        repeat = seen.get(slug, 0)
        seen[slug] = repeat + 1
        found.add(f"{slug}-{repeat}" if repeat else slug)
    return found


def test_anchors_follow_github():
    text = "# The full run, `make bench FULL=1` (2026-12-07)\n## Notes\n```\n# no\n```\n## Notes\n"
    assert anchors(text) == {"the-full-run-make-bench-full1-2026-12-07", "notes", "notes-1"}


def test_every_link_in_the_docs_leads_somewhere():
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = page.parent / path if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert len(pages) > 10
    assert broken == []
