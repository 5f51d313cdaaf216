"""SIGKILL the outbox relay at random points while producers commit business changes
with their audit events: every committed event reaches the log exactly once."""

from __future__ import annotations

import random
import secrets
import time

import pytest

from tests.faults.harness import Cluster, check, kill, rounds, settle

PRODUCERS = 3


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


def test_relay_sigkill(cluster):
    rng = random.Random(secrets.randbits(32))
    cluster.app_database()
    cluster.start_api()
    cluster.start_sequencer()
    for name in range(PRODUCERS):
        cluster.start_outbox_producer(str(name))
    cluster.wait_acknowledged()
    relays = [cluster.start_relay(), cluster.start_relay()]
    for _ in range(rounds(25)):
        time.sleep(rng.uniform(0.05, 0.3))  # only picks the moment of the next kill
        victim = rng.randrange(len(relays))
        kill(relays[victim])
        relays[victim] = cluster.start_relay()
    for proc in list(cluster.processes):
        if proc.poll() is None:
            kill(proc)  # producers die mid-transaction or right after a commit
    settle(cluster)
    counts = check(cluster)
    assert counts.acknowledged > 0
    assert counts.lost == 0 and counts.duplicated == 0, counts
    assert counts.unexpected <= PRODUCERS, counts
    assert counts.verified, counts
