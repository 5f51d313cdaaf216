"""Sequencer failover through leases: three `trailseal sequencer` processes under load
from several producers; the holder of the tenant's lease is SIGKILLed, another process
takes the lease once it expires, and in the end the log has every acknowledged event
exactly once, seqs 0..n-1 without a gap, one checkpoint per size, and verifies."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime

import psycopg
import pytest

from tests.faults.harness import (
    TENANT,
    Cluster,
    check,
    kill,
    rounds,
    settle,
)

PRODUCERS = 3
SEQUENCERS = 3


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


def _lease(conn: psycopg.Connection) -> tuple[str, datetime, datetime] | None:
    """The tenant's live lease: holder, acquired_at, expires_at."""
    row = conn.execute(
        "SELECT holder, acquired_at, expires_at FROM trailseal.sequencer_leases"
        " WHERE tenant = %s AND expires_at > now()", (TENANT,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def _size(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(size), 0) FROM trailseal.log_heads"
                       " WHERE tenant = %s", (TENANT,)).fetchone()
    return int(row[0]) if row else 0


def _wait(what: str, condition, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _holder_process(holder: str, sequencers: list[subprocess.Popen[bytes]]) -> int:
    pid = int(holder.split(":")[-2])
    return next(i for i, p in enumerate(sequencers) if p.pid == pid)


def test_lease_holder_sigkill_is_taken_over(cluster):
    cluster.start_api()
    sequencers = [cluster.start_sequencer() for _ in range(SEQUENCERS)]
    for name in range(PRODUCERS):
        cluster.start_producer(str(name))
    takeovers: list[float] = []
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        for _ in range(rounds(3)):
            lease = _wait("a live lease", lambda: _lease(conn))
            victim = _holder_process(lease[0], sequencers)
            before = _size(conn)
            _wait("events sequenced by the holder", lambda b=before: _size(conn) > b + 10)
            kill(sequencers[victim])
            row = conn.execute("SELECT now()").fetchone()
            killed_at = row[0]
            sequencers[victim] = cluster.start_sequencer()  # back as a spare
            old = lease[0]
            new = _wait("another holder", lambda old=old: (
                (found := _lease(conn)) is not None and found[0] != old and found))
            # Not before the dead holder's lease ran out. How soon after is a figure
            # (printed below, and in docs/scaling.md), not asserted: on a loaded machine
            # a spare's sweep can take seconds.
            takeovers.append((new[1] - killed_at).total_seconds())
            assert new[1] >= lease[2]
            # The new holder is sequencing: the log grows past where the victim left it.
            at_takeover = _size(conn)
            _wait("events sequenced by the new holder",
                  lambda s=at_takeover: _size(conn) > s)
    for proc in list(cluster.processes):
        if proc.poll() is None:
            kill(proc)
    settle(cluster)
    counts = check(cluster)
    with psycopg.connect(cluster.url) as conn:
        n, lo, hi, distinct = conn.execute(
            "SELECT count(*), min(seq), max(seq), count(DISTINCT seq) FROM trailseal.events"
            " WHERE tenant = %s", (TENANT,)).fetchone()
        sizes, distinct_sizes = conn.execute(
            "SELECT count(*), count(DISTINCT size) FROM trailseal.checkpoints"
            " WHERE tenant = %s", (TENANT,)).fetchone()
    print(f"takeover seconds after SIGKILL: {[round(t, 2) for t in takeovers]};"
          f" events={n} checkpoints={sizes}")
    assert (lo, hi, distinct) == (0, n - 1, n), (lo, hi, distinct, n)
    assert sizes == distinct_sizes
    assert counts.acknowledged > 0
    assert counts.lost == 0 and counts.duplicated == 0, counts
    assert counts.unexpected <= PRODUCERS, counts
    assert counts.verified, counts
