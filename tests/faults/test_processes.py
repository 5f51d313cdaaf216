"""SIGKILL the API and the sequencer at random points under load from several producers,
crash PostgreSQL, and break the network to it: nothing acknowledged is lost, nothing is
duplicated after dedupe, and the log still verifies."""

from __future__ import annotations

import random
import secrets
import time

import pytest

from tests.faults.harness import Cluster, check, kill, rounds, settle
from tests.faults.proxy import FaultyProxy

PRODUCERS = 3


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path)
    yield made
    made.stop()


def _pause(rng: random.Random) -> None:
    time.sleep(rng.uniform(0.05, 0.3))  # only picks the moment of the next fault


def _assert_clean(cluster: Cluster) -> None:
    for proc in list(cluster.processes):
        if proc.poll() is None:
            kill(proc)  # producers stop mid-record: at most one unlogged id each
    settle(cluster)
    counts = check(cluster)
    assert counts.acknowledged > 0
    assert counts.lost == 0 and counts.duplicated == 0, counts
    assert counts.unexpected <= PRODUCERS, counts
    assert counts.verified, counts


def test_api_sigkill(cluster):
    rng = random.Random(secrets.randbits(32))
    api = cluster.start_api()
    cluster.start_sequencer()
    for name in range(PRODUCERS):
        cluster.start_producer(str(name))
    cluster.wait_acknowledged()
    for _ in range(rounds(25)):
        _pause(rng)
        kill(api)
        api = cluster.start_api()
    _assert_clean(cluster)


def test_sequencer_sigkill(cluster):
    rng = random.Random(secrets.randbits(32))
    cluster.start_api()
    sequencers = [cluster.start_sequencer(), cluster.start_sequencer()]
    for name in range(PRODUCERS):
        cluster.start_producer(str(name))
    cluster.wait_acknowledged()
    for _ in range(rounds(25)):
        _pause(rng)
        victim = rng.randrange(len(sequencers))
        kill(sequencers[victim])
        sequencers[victim] = cluster.start_sequencer()
    _assert_clean(cluster)


def test_postgres_immediate_shutdown(cluster):
    rng = random.Random(secrets.randbits(32))
    cluster.start_api()
    cluster.start_sequencer()
    for name in range(PRODUCERS):
        cluster.start_producer(str(name))
    cluster.wait_acknowledged()
    for _ in range(rounds(3)):
        _pause(rng)
        cluster.crash_postgres()
        time.sleep(rng.uniform(0.1, 1.0))  # the database stays down a while
        cluster.start_postgres()
    _assert_clean(cluster)


def test_network_to_postgres_drops_delays_and_half_closes(cluster):
    rng = random.Random(secrets.randbits(32))
    socket_dir = cluster.url.split("host=")[1]
    proxy = FaultyProxy(f"{socket_dir}/.s.PGSQL.5432")
    proxied = f"postgresql://postgres@127.0.0.1:{proxy.port}/trailseal"
    try:
        cluster.start_api(proxied)
        cluster.start_sequencer(proxied)
        for name in range(PRODUCERS):
            cluster.start_producer(str(name))
        cluster.wait_acknowledged()
        for _ in range(rounds(10)):
            _pause(rng)
            fault = rng.choice(["drop", "half-close", "delay"])
            if fault == "drop":
                proxy.drop()
            elif fault == "half-close":
                proxy.half_close()
            else:
                proxy.delay = 0.2
                _pause(rng)
                proxy.delay = 0.0
    finally:
        for proc in list(cluster.processes):
            if proc.poll() is None:
                kill(proc)
        proxy.close()
    _assert_clean(cluster)
