"""The vendored htmx is the file VENDORED.md names, byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "src" / "trailseal" / "web" / "static"


def test_vendored_htmx_matches_its_recorded_checksum():
    record = (STATIC / "VENDORED.md").read_text()
    version = re.search(r"^- version: (2\.\d+\.\d+)$", record, re.M)
    recorded = re.search(r"^- sha256 of htmx\.min\.js: ([0-9a-f]{64})$", record, re.M)
    assert version and recorded, record
    data = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == recorded[1]
    assert (STATIC / "htmx.LICENSE").read_text().startswith("Zero-Clause BSD")


def test_the_makefile_vendors_the_recorded_version():
    record = (STATIC / "VENDORED.md").read_text()
    makefile = (STATIC.parents[3] / "Makefile").read_text()
    version = re.search(r"^- version: (\S+)$", record, re.M)
    assert version and f"HTMX_VERSION := {version[1]}" in makefile
