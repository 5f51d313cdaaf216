"""Checkpoints are POSTed to a configured witness; a witness that is down costs nothing
but a counted, logged failure."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from tests.support import an_event, free_port, make_tenant, run
from trailseal import ingest
from trailseal.integrity.checkpoint import open_checkpoint
from trailseal.runtime import build_sequencer, load_signer
from trailseal.store import create_pool


class _Witness(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Witness.received.append((self.headers["Content-Type"], body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def _sequence_one(database_url, settings, tenant: str):
    pool = create_pool(database_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        at = ingest.now()
        async with pool.connection() as conn:
            await ingest.write_inbox(conn, tenant, ingest.prepare([an_event()], tenant, at), at)
        sequencer = build_sequencer(pool, settings)
        batch = await sequencer.sequence_batch(tenant)
        return batch, sequencer.witness
    finally:
        await pool.close()


def test_checkpoints_are_posted_to_the_witness(own_database, settings, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Witness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/add-checkpoint"
        configured = settings.model_copy(update={"witness_url": url, "witness_dir": tmp_path})
        tenant = make_tenant(own_database, "wit")
        batch, witness = run(_sequence_one(own_database, configured, tenant.name))
    finally:
        server.shutdown()
    assert batch is not None and witness is not None and witness.failures == 0
    [(content_type, body)] = _Witness.received
    assert content_type == "text/plain"
    assert body.decode() == batch.checkpoint
    checkpoint = open_checkpoint(body, [load_signer(settings).verifier()])
    assert (checkpoint.origin, checkpoint.size) == (f"audit.test/trailseal/{tenant.name}", 1)


def test_an_unreachable_witness_is_counted_not_fatal(own_database, settings, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/add-checkpoint"  # nothing listens there
    configured = settings.model_copy(update={"witness_url": url, "witness_dir": tmp_path})
    tenant = make_tenant(own_database, "wit")
    batch, witness = run(_sequence_one(own_database, configured, tenant.name))
    assert batch is not None and batch.count == 1  # committed all the same
    assert witness is not None and witness.failures == 1
    assert (tmp_path / f"{tenant.name}/checkpoints/{1:020d}").exists()  # the folder still got it
