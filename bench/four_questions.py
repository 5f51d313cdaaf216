"""The seed's four questions over HTTP, against the same SQL run directly with psycopg.

Measures: the server's time of `GET /v1/events` (first page of 100) for each of the four
questions of docs/querying.md, asked of `trailseal serve` over a log of N events, from
its `Server-Timing: app;dur=` header (arrival to the response start: the key's
authentication, the query, the page's JSON); and the same asks timed end to end by the
client (adding the round trip on the loopback and the meta-audit's record of the read,
written before the last body message). p50 and p95 per question.
Baseline, same run: the very statement the API runs (`select_events`, LIMIT 101) as the
reader role under row-level security, through one open psycopg connection. HTTP and
direct alternate query by query. Reproduce:
`.venv/bin/python bench/four_questions.py --events 100000`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # run as a script: bench/ is on the path, its parent is not
    sys.path.insert(0, ROOT)

import httpx
import psycopg
from bench import common

from trailseal.reading.query import EventFilter, select_events
from trailseal.store import Role

NAME = "questions"
SIZES = {"smoke": 200, "quick": 100_000, "full": 10_000_000}
GOAL_RATIO, GOAL_P95_MS = 1.5, 20.0
PAGE = 100


def questions(now: datetime) -> dict[str, dict[str, str]]:
    """The four questions as the query parameters of GET /v1/events."""
    return {
        "changes to u_42, last 30 days": {
            "target_type": "user", "target_id": "u_42",
            "since": (now - timedelta(days=30)).isoformat()},
        "who changed billing.plan": {
            "target_type": "setting", "target_id": "billing.plan", "action": "setting.*"},
        "failed logins from 203.0.113.0/24": {
            "action": "auth.login.*", "outcome": "failure", "ip": "203.0.113.0/24"},
        "employees' data exports in a quarter": {
            "action": "data.export.*", "actor_type": "user",
            "since": (now - timedelta(days=100)).isoformat(),
            "until": (now - timedelta(days=10)).isoformat()},
    }


def _filter(params: dict[str, str]) -> EventFilter:
    values: dict[str, Any] = dict(params)
    for name in ("since", "until"):
        if name in values:
            values[name] = datetime.fromisoformat(values[name])
    if "action" in values:
        values["action"] = (values["action"],)
    return EventFilter(**values)


def measure(env: common.Env, tenant: str, asks: int) -> dict[str, dict[str, list[float]]]:
    """Per question, milliseconds of each ask over HTTP and directly."""
    base, token = env.serve(), env.token(tenant)
    found: dict[str, dict[str, list[float]]] = {}
    clock = time.perf_counter
    with (httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                       timeout=60) as client,
          psycopg.connect(env.url, autocommit=True) as conn):
        for title, params in questions(datetime.now(UTC)).items():
            statement, args = select_events(tenant, _filter(params), limit=PAGE + 1)
            times: dict[str, list[float]] = {"http": [], "server": [], "direct": []}
            for _ in range(asks):
                started = clock()
                answer = client.get("/v1/events", params={**params, "limit": str(PAGE)})
                answer.raise_for_status()
                times["http"].append((clock() - started) * 1000)
                times["server"].append(common.server_ms(answer))
                started = clock()
                with conn.transaction():
                    conn.execute("SELECT set_config('role', %s, true),"
                                 " set_config('trailseal.tenant', %s, true)",
                                 (Role.READER.value, tenant))
                    conn.execute(statement, args, prepare=False).fetchall()  # as the API
                times["direct"].append((clock() - started) * 1000)
            found[title] = times
    return found


def run(env: common.Env, size: int) -> dict[str, Any]:
    """p50/p95 of each question over HTTP (server and client time) and directly, and
    the ratio of p50s."""
    tenant = env.log(size)
    asks = 20 if env.smoke else 100
    rounds = [measure(env, tenant, asks) for _ in range(env.repeat)]
    per_question: dict[str, Any] = {}
    worst_ratio = worst_p95 = worst_client_ratio = 0.0
    for title in rounds[0]:
        figures = {}
        for way in ("server", "http", "direct"):
            for label, q in (("p50", 0.5), ("p95", 0.95)):
                figures[f"{way}_{label}_ms"] = common.spread(
                    [common.percentile(r[title][way], q) for r in rounds])
        ratio = figures["server_p50_ms"]["median"] / figures["direct_p50_ms"]["median"]
        client_ratio = figures["http_p50_ms"]["median"] / figures["direct_p50_ms"]["median"]
        figures["ratio_p50"], figures["client_ratio_p50"] = ratio, client_ratio
        per_question[title] = figures
        worst_ratio = max(worst_ratio, ratio)
        worst_client_ratio = max(worst_client_ratio, client_ratio)
        worst_p95 = max(worst_p95, figures["server_p95_ms"]["median"])
    slowest = max(per_question, key=lambda t: per_question[t]["server_p50_ms"]["median"])
    return common.result(
        NAME,
        measures="server time (Server-Timing app;dur) of GET /v1/events (first page of "
                 "100) for each of the four questions of docs/querying.md, p50/p95; the "
                 "client's end-to-end time on the loopback reported alongside",
        baseline="the same SQL (select_events, LIMIT 101) as the reader role under "
                 "row-level security, run directly with psycopg on one open connection, "
                 "planned for its values as the API plans it (never prepared)",
        goal=f"<= {GOAL_RATIO:g}x the baseline (p50 against p50, each question), "
             f"p95 <= {GOAL_P95_MS:g} ms",
        reproduce=f"make bench ARGS='--only {NAME}'  (or: .venv/bin/python "
                  f"bench/four_questions.py --events {size})",
        size=size, unit="ms", subject=per_question[slowest]["server_p50_ms"],
        baselines={"direct SQL": per_question[slowest]["direct_p50_ms"],
                   "client time, end to end": per_question[slowest]["http_p50_ms"]},
        ratio=worst_ratio,
        ratio_means="server p50 / direct p50, the worst of the four questions (the "
                    "subject and baselines shown are the slowest question's p50s)",
        met=worst_ratio <= GOAL_RATIO and worst_p95 <= GOAL_P95_MS,
        worst_server_p95_ms=worst_p95, worst_client_ratio_p50=worst_client_ratio,
        questions=per_question, asks_per_round=asks,
    )


def main() -> None:
    common.script(__doc__ or NAME, run)


if __name__ == "__main__":
    main()
