"""`trailseal forward` against real receivers on 127.0.0.1: a syslog TCP collector
(RFC 6587 octet counting), a UDP one and an HTTP one. Every event arrives once, in seq
order; a forwarder killed mid-batch resumes from its state file, re-sending at most that
batch; a loopback target is refused without --allow-private; redirects are not followed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from tests.support import Tenant, an_event
from tests.test_siem import LINE, parse_structured_data
from trailseal.cli import app

SEQ = re.compile(r' seq="(\d+)"')


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class SyslogTcp(socketserver.ThreadingTCPServer):
    """Reads octet-counted frames until the sender closes its side, then closes too.
    With ``hold_after``, the connection that brings the total past it is held open
    (unacknowledged) until ``release`` is set."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hold_after: int | None = None) -> None:
        self.lines: list[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.hold_after = hold_after
        self.held = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _SyslogHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _SyslogHandler(socketserver.BaseRequestHandler):
    server: SyslogTcp

    def handle(self) -> None:
        data = b""
        while chunk := self.request.recv(65536):
            data += chunk
        frames = []
        while data:
            length, _, rest = data.partition(b" ")
            size = int(length)
            frames.append(rest[:size].decode())
            data = rest[size:]
        with self.server.lock:
            self.server.connections += 1
            self.server.lines.extend(frames)
            hold = self.server.hold_after is not None and len(self.server.lines) >= \
                self.server.hold_after and not self.server.held.is_set()
            if hold:
                self.server.held.set()
        if hold:
            self.server.release.wait(60)


class HttpCollector(ThreadingHTTPServer):
    """Takes JSON batches. ``fail`` lists request numbers (from 1) answered 500;
    ``redirect`` answers every request 307 to that URL."""

    daemon_threads = True

    def __init__(self, fail: tuple[int, ...] = (), redirect: str | None = None) -> None:
        self.batches: list[dict] = []
        self.requests = 0
        self.fail, self.redirect = fail, redirect
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ingest"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _CollectorHandler(BaseHTTPRequestHandler):
    server: HttpCollector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        if self.server.redirect:
            self.send_response(307)
            self.send_header("Location", self.server.redirect)
        elif self.server.requests in self.server.fail:
            self.send_response(500)
        else:
            self.server.batches.append(json.loads(body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def start():
    """Starts a receiver (``start(SyslogTcp, hold_after=...)``); stops them all after."""
    servers: list[SyslogTcp | HttpCollector] = []

    def make(kind, **kwargs):
        servers.append(kind(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def forward(service_url):
    runner = CliRunner()

    def invoke(tenant: Tenant, to: str, state, *args: str):
        return runner.invoke(app, ["forward", "--to", to, "--url", service_url, "--token",
                                   tenant.tokens["read"], "--state", str(state), *args])

    return invoke


def _seed(client, tenant: Tenant, n: int) -> list[str]:
    events = [an_event(action="doc.updated", target={"type": "doc", "id": f"d{i}"})
              for i in range(n)]
    r = client.post("/v1/events?wait=sequenced", json={"events": events},
                    headers=tenant.auth("ingest"))
    assert r.status_code == 201, r.text
    return [e["id"] for e in events]


def _ids(lines: list[str]) -> list[str]:
    return [parse_structured_data(LINE.fullmatch(line)[7])[1]["id"] for line in lines]


def _seqs(lines: list[str]) -> list[int]:
    return [int(SEQ.search(line)[1]) for line in lines]


def test_syslog_over_tcp_gets_every_event_once_in_seq_order(
    client, tenant, forward, start, tmp_path
):
    ids = _seed(client, tenant, 23)
    server = start(SyslogTcp)
    state = tmp_path / "state.json"
    done = forward(tenant, f"syslog://127.0.0.1:{server.port}", state,
                   "--once", "--allow-private", "--batch-size", "5")
    assert done.exit_code == 0, done.output
    assert _ids(server.lines) == ids
    assert _seqs(server.lines) == list(range(23))
    assert server.connections == 5  # one per batch: 5 + 5 + 5 + 5 + 3
    assert json.loads(state.read_text())["cursor"]
    # Caught up: a second run sends nothing again.
    again = forward(tenant, f"syslog://127.0.0.1:{server.port}", state, "--once",
                    "--allow-private")
    assert again.exit_code == 0, again.output
    assert len(server.lines) == 23
    # More events later: only those.
    more = _seed(client, tenant, 4)
    forward(tenant, f"syslog://127.0.0.1:{server.port}", state, "--once", "--allow-private")
    assert _ids(server.lines) == ids + more


def test_https_style_collector_gets_ocsf_batches(client, tenant, forward, start, tmp_path):
    ids = _seed(client, tenant, 12)
    target = start(HttpCollector)
    done = forward(tenant, target.url, tmp_path / "s", "--once", "--allow-private",
                   "--batch-size", "5")
    assert done.exit_code == 0, done.output
    assert [b["format"] for b in target.batches] == ["ocsf"] * 3
    events = [e for b in target.batches for e in b["events"]]
    assert [e["metadata"]["uid"] for e in events] == ids
    assert [e["metadata"]["sequence"] for e in events] == list(range(12))
    assert all(e["class_uid"] == 6003 and e["activity_id"] == 3 for e in events)


def test_syslog_lines_can_go_over_http_too(client, tenant, forward, start, tmp_path):
    ids = _seed(client, tenant, 3)
    target = start(HttpCollector)
    done = forward(tenant, target.url, tmp_path / "s", "--once", "--allow-private",
                   "--format", "syslog")
    assert done.exit_code == 0, done.output
    (batch,) = target.batches
    assert batch["format"] == "syslog" and _ids(batch["events"]) == ids


def test_syslog_over_udp(client, tenant, forward, tmp_path):
    ids = _seed(client, tenant, 7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(30)
        port = receiver.getsockname()[1]
        done = forward(tenant, f"syslog+udp://127.0.0.1:{port}", tmp_path / "s", "--once",
                       "--allow-private")
        assert done.exit_code == 0, done.output
        datagrams = [receiver.recv(65536).decode() for _ in ids]
    assert _ids(datagrams) == ids


def test_a_refused_batch_is_sent_again_and_nothing_is_skipped(
    client, tenant, forward, start, tmp_path
):
    ids = _seed(client, tenant, 15)
    target = start(HttpCollector, fail=(2,))
    state = tmp_path / "state.json"
    failed = forward(tenant, target.url, state, "--once", "--allow-private", "--batch-size", "5")
    assert failed.exit_code == 1
    assert "answered 500" in failed.output and "delivered 5 event(s)" in " ".join(
        failed.output.split())
    assert [e["metadata"]["uid"] for b in target.batches for e in b["events"]] == ids[:5]
    done = forward(tenant, target.url, state, "--once", "--allow-private", "--batch-size", "5")
    assert done.exit_code == 0, done.output
    assert [e["metadata"]["uid"] for b in target.batches for e in b["events"]] == ids


def test_a_killed_forwarder_resumes_from_its_state_file(
    client, tenant, service_url, forward, start, tmp_path
):
    ids = _seed(client, tenant, 40)
    # The collector reads the batch that takes it past 17 events, then holds it: the
    # forwarder is killed after the collector got that batch and before it was told so.
    server = start(SyslogTcp, hold_after=17)
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "trailseal", "forward", "--to",
         f"syslog://127.0.0.1:{server.port}", "--url", service_url, "--token",
         tenant.tokens["read"], "--state", str(state), "--allow-private", "--batch-size", "5",
         "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )
    try:
        wait_for(server.held.is_set, "the collector to hold a batch")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    server.release.set()
    assert len(server.lines) == 20  # four batches of 5 arrived; the fourth was never acked
    assert len(ids) - len(server.lines) > 0
    done = forward(tenant, f"syslog://127.0.0.1:{server.port}", state, "--once",
                   "--allow-private", "--batch-size", "5")
    assert done.exit_code == 0, done.output
    got = _ids(server.lines)
    # Every event arrived; the only repeats are the one batch in flight at the kill.
    assert sorted(set(got), key=got.index) == ids
    assert got == ids[:20] + ids[15:]
    seqs = _seqs(server.lines)
    assert seqs[:20] == list(range(20)) and seqs[20:] == list(range(15, 40))


def test_tailing_retries_a_failed_batch_and_stops_on_sigterm(
    client, tenant, service_url, start, tmp_path
):
    ids = _seed(client, tenant, 6)
    target = start(HttpCollector, fail=(1,))
    process = subprocess.Popen(
        [sys.executable, "-m", "trailseal", "forward", "--to", target.url, "--url",
         service_url, "--token", tenant.tokens["read"], "--state", str(tmp_path / "s"),
         "--allow-private", "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    try:

        def delivered() -> list[str]:
            return [e["metadata"]["uid"] for b in target.batches for e in b["events"]]

        wait_for(lambda: len(delivered()) >= 6, "the retried batch")
        more = _seed(client, tenant, 2)  # tailing: later events follow
        wait_for(lambda: len(delivered()) >= 8, "the later events")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "answered 500; trying again" in output and "forwarded 8 event(s)" in output
    assert delivered() == ids + more


def test_loopback_targets_are_refused_without_allow_private(
    client, tenant, forward, start, tmp_path
):
    _seed(client, tenant, 2)
    server, target = start(SyslogTcp), start(HttpCollector)
    for to in (f"syslog://127.0.0.1:{server.port}", f"syslog://localhost:{server.port}",
               f"syslog+udp://[::1]:{server.port}", target.url,
               target.url.replace("127.0.0.1", "2130706433")):
        refused = forward(tenant, to, tmp_path / "s", "--once")
        assert refused.exit_code == 1, to
        message = " ".join(refused.output.split())
        assert "refusing" in message and "--allow-private" in message, message
        assert "loopback" in message
    assert server.connections == 0 and target.requests == 0
    assert not (tmp_path / "s").exists()


def test_redirects_are_not_followed(client, tenant, forward, start, tmp_path):
    _seed(client, tenant, 2)
    inner = start(HttpCollector)
    outer = start(HttpCollector, redirect=inner.url)
    state = tmp_path / "s"
    done = forward(tenant, outer.url, state, "--once", "--allow-private")
    assert done.exit_code == 1
    assert "redirects are not followed" in " ".join(done.output.split())
    assert outer.requests == 1 and inner.requests == 0
    assert not state.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "syslog://127.0.0.1:1", "--format", "ocsf"], "takes --format syslog"),
        (["--to", "ftp://example.com/"], "unknown target"),
        (["--to", "syslog://"], "names no host"),
        (["--to", "syslog://127.0.0.1:99999"], "invalid port"),
        (["--to", "syslog://no-such-host.invalid"], "cannot resolve no-such-host.invalid"),
    ],
)
def test_bad_targets_are_messages(tenant, forward, tmp_path, args, message):
    done = forward(tenant, args[1], tmp_path / "s", *args[2:], "--allow-private")
    assert done.exit_code != 0 and message in " ".join(done.output.split())


def test_a_state_file_of_another_service_is_refused(tenant, forward, start, tmp_path):
    state = tmp_path / "s"
    state.write_text(json.dumps({"version": 1, "source": "https://other.example",
                                 "cursor": "abc"}))
    done = forward(tenant, start(HttpCollector).url, state, "--once", "--allow-private")
    assert done.exit_code == 1 and "use another state file" in " ".join(done.output.split())


def test_another_tenants_key_cannot_use_the_cursor(
    client, tenant, other_tenant, forward, start, tmp_path
):
    _seed(client, tenant, 3)
    target = start(HttpCollector)
    state = tmp_path / "s"
    assert forward(tenant, target.url, state, "--once", "--allow-private").exit_code == 0
    done = forward(other_tenant, target.url, state, "--once", "--allow-private")
    assert done.exit_code == 1 and "422" in done.output
    assert tenant.name not in done.output
