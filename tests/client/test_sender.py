"""The sender thread's shutdown, against a real HTTP server on the loopback."""

from __future__ import annotations

import http.server
import logging
import threading

from trailseal.client import AuditClient


def test_close_during_a_delivery_lets_it_finish_without_an_error(tmp_path, caplog):
    """close() with a timeout shorter than a delivery in flight: the sender finishes its
    pass (the rest of the spool, a batch at a time), stops and closes its own HTTP client,
    with no error logged (it used to find the client closed under it at its next batch)."""
    arrived, answer = threading.Event(), threading.Event()
    posts: list[int] = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append(1)
            arrived.set()
            answer.wait(30)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = AuditClient(url, "tsk_none", tmp_path / "spool", max_batch=1, max_delay=0.05)
        for target in ("42", "43", "44"):  # three batches of one
            client.record("user.role.updated", actor=("user", "7"), target=("user", target))
        assert arrived.wait(30)
        with caplog.at_level(logging.WARNING, logger="trailseal.client"):
            client.close(0.1)  # returns while the request is still unanswered
            assert client.sender.is_alive()
            answer.set()
            client.sender.join(30)
        assert not client.sender.is_alive()
        assert client.sender.http.is_closed
        assert len(posts) == 3  # the pass went on to the end
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    finally:
        answer.set()
        server.shutdown()
