"""Where the server's time of an inclusion proof goes: pyinstrument over the app in this
process (no HTTP socket), asked for random inclusion proofs over a log of N events.

Not a benchmark (no baseline, no figure kept): the profile behind the proof changes in
docs/benchmarks.md. Needs the bench extra (pyinstrument). Reproduce:
`.venv/bin/python bench/profile_proofs.py --events 20000`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import httpx
from bench import common

from trailseal.web.app import create_app


async def ask(env: common.Env, token: str, size: int, asks: int) -> str:
    app = create_app(env.settings, env.url, b"k" * 32)
    rng = random.Random(size)
    headers = {"Authorization": f"Bearer {token}"}
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://bench", headers=headers) as client):
        for _ in range(asks):  # warm: the pool's connections, the kept tiles
            answer = await client.get("/v1/log/proof/inclusion",
                                      params={"index": rng.randrange(size), "size": size})
            answer.raise_for_status()
        from pyinstrument import Profiler  # the bench extra; imported here, so the
        # script imports (tests/test_bench_imports.py) where only make test's extras are

        profiler = Profiler(async_mode="enabled")
        profiler.start()
        for _ in range(asks):
            await client.get("/v1/log/proof/inclusion",
                             params={"index": rng.randrange(size), "size": size})
        profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--asks", type=int, default=300)
    common.data_dir_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = common.start(args.data_dir or Path(tmp), 1)
        try:
            tenant = env.log(args.events)
            print(asyncio.run(ask(env, env.token(tenant), args.events, args.asks)))
        finally:
            env.close()


if __name__ == "__main__":
    main()
