"""verify's worker processes: one killed mid-run costs nothing but speed."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from psycopg import AsyncConnection

from tests.support import an_event, make_tenant, run
from trailseal.integrity.checkpoint import log_origin
from trailseal.runtime import load_signer
from trailseal.verify import verify_tenant
from trailseal.witness import WormFolder

_FORKSERVER = b"from multiprocessing.forkserver import main"


def _workers() -> list[int]:
    """This machine's verify workers: processes forked from a forkserver."""
    servers, found = set(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if _FORKSERVER in cmdline:
            servers.add(int(entry.name))
            found.append((int(entry.name), ppid))
    return [pid for pid, ppid in found if ppid in servers]


def test_a_killed_worker_is_taken_over_in_process(client, database_url, settings,
                                                   monkeypatch, caplog):
    tenant = make_tenant(database_url, "workers")
    for _ in range(4):
        r = client.post("/v1/events?wait=sequenced", json={"events": [an_event()
                        for _ in range(64)]}, headers=tenant.auth("ingest"))
        assert r.status_code == 201
    monkeypatch.setattr("trailseal.verify._RUN", 16)  # 16 runs, a few in flight at a time
    killed: list[int] = []

    def progress(count: int) -> None:
        if not killed and count:
            killed.extend(_workers())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    async def go():
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await verify_tenant(
                conn, tenant.name, [load_signer(settings).verifier()],
                origin=log_origin("audit.test", tenant.name),
                witness=WormFolder(settings.data_dir / "witness"),
                progress=progress, database_url=database_url, workers=2,
            )

    with caplog.at_level(logging.WARNING, logger="trailseal.verify"):
        report = run(go())
    assert killed, "no worker process was found to kill"
    assert report.ok, report.finding
    assert report.events == 256
    assert "a verify worker process died" in caplog.text


def test_a_worker_starts_light():
    # A worker imports the program's main module: for `trailseal` that is the console
    # script, which must not pull in every command (a second of imports per worker).
    import subprocess
    import sys

    probe = ("import sys, trailseal.cli, trailseal.verify_read; "
             "print(sorted(m for m in ('trailseal.verify', 'trailseal.web', 'pyarrow', "
             "'httpx', 'typer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_worker_reads_each_run_in_a_transaction_of_its_own(client, database_url,
                                                              monkeypatch):
    # The worker's connection first keeps its memory (KEEP_MEMORY): that statement must
    # not leave a transaction open around the runs, with the role of the first run's
    # tenant in it.
    from psycopg.pq import TransactionStatus

    from trailseal import verify_read

    tenant = make_tenant(database_url, "worker-tx")
    r = client.post("/v1/events?wait=sequenced", json={"events": [an_event()
                    for _ in range(40)]}, headers=tenant.auth("ingest"))
    assert r.status_code == 201
    monkeypatch.setattr(verify_read, "_worker_connection", None)
    try:
        for start in (0, 16, 32):
            done = verify_read.read_run(database_url, tenant.name, start, start + 16,
                                        edge_start=0, edge=b"")
            assert done.rows == min(16, 40 - start) and done.done.first_bad_chain is None
            conn = verify_read._worker_connection
            assert conn is not None
            assert conn.info.transaction_status == TransactionStatus.IDLE
            assert conn.execute("SELECT current_user").fetchone()[0] != "trailseal_owner"
            conn.rollback()
    finally:
        if verify_read._worker_connection is not None:
            verify_read._worker_connection.close()
