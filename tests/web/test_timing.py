"""Every response carries ``Server-Timing: app;dur=<ms>``."""

import re

from tests.support import an_event

SERVER_TIMING = re.compile(r"^app;dur=(\d+(\.\d+)?)$")


def _duration(header: str) -> float:
    found = SERVER_TIMING.match(header)
    assert found is not None, header
    return float(found.group(1))


def test_server_timing_on_every_kind_of_answer(client, tenant):
    event = an_event()
    answers = [
        client.get("/healthz"),
        client.post("/v1/events?wait=sequenced", json=event, headers=tenant.auth()),
        client.get(f"/v1/events/{event['id']}", headers=tenant.auth()),
        client.get("/v1/events", headers={"Authorization": "Bearer nope"}),  # a 401 problem
        client.get("/v1/no-such-thing"),  # a 404
    ]
    assert [a.status_code for a in answers] == [200, 201, 200, 401, 404]
    for answer in answers:
        assert answer.headers.get_list("server-timing") == [answer.headers["server-timing"]]
        assert _duration(answer.headers["server-timing"]) >= 0
