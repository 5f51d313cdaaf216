"""Inclusion and consistency proofs over HTTP at N leaves, against proofs from a tree
held in memory.

Measures: the server's time of `GET /v1/log/proof/inclusion?index=I&size=N` and
`GET /v1/log/proof/consistency?from=M&to=N` (random I and M) from `trailseal serve` over a
log of N events, from its `Server-Timing: app;dur=` header (arrival to the response
start); and the same asks timed end to end by the client on the loopback (adding the
round trip and the meta-audit's record of the read).
Baseline, same run: the same proofs planned by the same pure core
(`plan_inclusion`/`plan_consistency` and `assemble`) over the tree's tiles held in a
Python dict, built from the log's leaf hashes before timing. Alternating ask by ask.
Reproduce: `.venv/bin/python bench/proof_latency.py --events 100000`.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import httpx
import psycopg
from bench import common

from trailseal.integrity.proofs import NodeID, assemble, plan_consistency, plan_inclusion
from trailseal.integrity.tiles import TreeState, subtree_root, tile_for_node
from trailseal.store import Role

NAME = "proofs"
SIZES = {"smoke": 200, "quick": 100_000, "full": 10_000_000}
GOAL_MS = 2.0
HASH = 32


class MemoryTree:
    """A tree of N leaves as full tiles in a dict plus the right edge: what the stored
    tree holds, without the database."""

    def __init__(self, state: TreeState, tiles: dict[tuple[int, int], bytes]) -> None:
        self.state, self.tiles = state, tiles

    @classmethod
    def load(cls, url: str, tenant: str, size: int) -> MemoryTree:
        """The first ``size`` leaves of ``tenant``'s log, read from the database."""
        state, tiles = TreeState(), {}  # type: tuple[TreeState, dict[tuple[int, int], bytes]]
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT set_config('role', %s, true),"
                         " set_config('trailseal.tenant', %s, true)",
                         (Role.READER.value, tenant))
            with conn.cursor(name="leaves", binary=True) as cur:
                cur.itersize = 65536
                cur.execute("SELECT leaf_hash FROM trailseal.events WHERE tenant = %s"
                            " AND seq < %s ORDER BY seq", (tenant, size))
                chunk: list[bytes] = []
                for (leaf,) in cur:
                    chunk.append(bytes(leaf))
                    if len(chunk) == 65536:
                        tiles.update({(t.level, t.index): t.hashes
                                      for t in state.extend(b"".join(chunk))})
                        chunk = []
                tiles.update({(t.level, t.index): t.hashes
                              for t in state.extend(b"".join(chunk))})
        return cls(state, tiles)

    def _tile(self, level: int, index: int) -> bytes:
        found = self.tiles.get((level, index))
        return found if found is not None else b"".join(self.state.edge[level])

    def node_hashes(self, nodes: list[NodeID]) -> dict[NodeID, bytes]:
        found = {}
        for node in nodes:
            level, index, offset, count = tile_for_node(node)
            data = self._tile(level, index)
            hashes = [data[i:i + HASH] for i in range(0, len(data), HASH)]
            found[node] = subtree_root(hashes[offset:offset + count])
        return found

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        plan = plan_inclusion(index, size)
        return assemble(plan, self.node_hashes(plan.node_ids()))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        plan = plan_consistency(size1, size2)
        return assemble(plan, self.node_hashes(plan.node_ids()))


def measure(env: common.Env, tenant: str, size: int, asks: int) -> dict[str, list[float]]:
    """Milliseconds of each ask: inclusion and consistency, over HTTP and in memory."""
    tree = MemoryTree.load(env.url, tenant, size)
    assert tree.state.size == size
    rng = random.Random(size)
    clock = time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in
                                     ("inclusion_server", "inclusion_http",
                                      "inclusion_memory", "consistency_server",
                                      "consistency_http", "consistency_memory")}
    with httpx.Client(base_url=env.serve(), timeout=60,
                      headers={"Authorization": f"Bearer {env.token(tenant)}"}) as client:
        for _ in range(asks):
            index, older = rng.randrange(size), rng.randrange(1, size + 1)
            started = clock()
            answer = client.get("/v1/log/proof/inclusion", params={"index": index, "size": size})
            answer.raise_for_status()
            times["inclusion_http"].append((clock() - started) * 1000)
            times["inclusion_server"].append(common.server_ms(answer))
            started = clock()
            proof = tree.inclusion_proof(index, size)
            times["inclusion_memory"].append((clock() - started) * 1000)
            assert len(proof) == len(answer.json()["hashes"])
            started = clock()
            answer = client.get("/v1/log/proof/consistency", params={"from": older, "to": size})
            answer.raise_for_status()
            times["consistency_http"].append((clock() - started) * 1000)
            times["consistency_server"].append(common.server_ms(answer))
            started = clock()
            tree.consistency_proof(older, size)
            times["consistency_memory"].append((clock() - started) * 1000)
    return times


def run(env: common.Env, size: int) -> dict[str, Any]:
    """p50/p95 of both proofs over HTTP (server and client time) against the same
    proofs from memory."""
    tenant = env.log(size)
    asks = 20 if env.smoke else 200
    rounds = [measure(env, tenant, size, asks) for _ in range(env.repeat)]
    figures = {f"{name}_{label}_ms": common.spread([common.percentile(r[name], q)
                                                    for r in rounds])
               for name in rounds[0] for label, q in (("p50", 0.5), ("p95", 0.95))}
    slower = max(("inclusion", "consistency"),
                 key=lambda p: figures[f"{p}_server_p50_ms"]["median"])
    subject = figures[f"{slower}_server_p50_ms"]
    memory = figures[f"{slower}_memory_p50_ms"]
    return common.result(
        NAME,
        measures="server time (Server-Timing app;dur) of GET /v1/log/proof/inclusion and "
                 "/consistency at N leaves, p50/p95; the client's end-to-end time on the "
                 "loopback reported alongside",
        baseline="the same proof planned by the same pure core over the tree's tiles held "
                 "in memory (no database, no HTTP)",
        goal=f"<= {GOAL_MS:g} ms server time (p50)",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/proof_latency.py --events {size})",
        size=size, unit="ms", subject=subject,
        baselines={f"{slower}, in memory": memory,
                   f"{slower}, client time end to end": figures[f"{slower}_http_p50_ms"]},
        ratio=subject["median"] / memory["median"],
        ratio_means=f"server p50 / in-memory p50 of the slower proof ({slower})",
        met=subject["median"] <= GOAL_MS, proofs=figures, asks_per_round=asks,
    )


def main() -> None:
    common.script(__doc__ or NAME, run)


if __name__ == "__main__":
    main()
