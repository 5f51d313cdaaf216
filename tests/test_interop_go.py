"""Standard tooling reads the log: the reference Go packages golang.org/x/mod/sumdb/note
and sumdb/tlog (Debian's golang-golang-x-mod-dev, installed by `make test`) open the
checkpoint, recompute the root from the tiles and check entries and an inclusion proof."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import an_event
from trailseal.integrity.notes import generate_key

SOURCE = Path(__file__).parent / "interop" / "tlogclient"


@pytest.fixture(scope="session")
def tlogclient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("go") / "tlogclient"
    env = {**os.environ, "GOPATH": "/usr/share/gocode", "GO111MODULE": "off",
           "GOCACHE": str(out.parent / "cache"), "GOFLAGS": ""}
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=SOURCE, env=env, check=True)
    return out


def _run(binary: Path, base: str, token: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), base, token, key], capture_output=True, text=True,
                          timeout=60)


def test_go_reference_client_verifies_the_log(
    tlogclient, client, service_url, tenant, other_tenant
):
    for _ in range(3):
        r = client.post("/v1/events?wait=sequenced",
                        json={"events": [an_event() for _ in range(250)]},
                        headers=tenant.auth("ingest"))
        assert r.status_code == 201
    # The verifier key is the same for every tenant. Read with another tenant's key, the
    # meta-audit counts this read in that tenant's log, so this log stays at the 750
    # events even if a minute ends (and its log reads are recorded) before the client
    # reads the checkpoint.
    key = client.get("/v1/log/key", headers=other_tenant.auth("read")).text.split()[0]
    done = _run(tlogclient, f"{service_url}/v1/log/", tenant.tokens["read"], key)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["size"] == 750 and result["entries"] == 750
    assert result["origin"] == f"audit.test/trailseal/{tenant.name}"
    assert result["signer"] == "audit.test/trailseal"


def test_go_reference_client_refuses_another_key(tlogclient, client, service_url, tenant):
    r = client.post("/v1/events?wait=sequenced", json=an_event(), headers=tenant.auth())
    assert r.status_code == 201
    _, stranger = generate_key("audit.test/trailseal")
    done = _run(tlogclient, f"{service_url}/v1/log/", tenant.token, stranger)
    assert done.returncode == 1
    assert "checkpoint signature" in done.stderr
