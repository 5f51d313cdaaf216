"""Health, readiness, OpenAPI, and problem documents for unknown routes."""


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"] == {"database": "ok", "schema": "ok"}
    # Other tests in the same run tamper with logs, so verify_failed may hold here.
    assert set(body["alerts"]) == {"sequencer_stalled", "checkpoint_stale",
                                   "witness_unreachable", "verify_failed"}
    assert body["status"] == ("degraded" if any(body["alerts"].values()) else "ready")


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/events", "/v1/events/{event_id}", "/healthz", "/readyz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][0] == {"$ref": "#/components/schemas/EventV1"}
    components = spec["components"]["schemas"]
    assert {"EventV1", "Actor", "Target", "Change", "Context", "Outcome"} <= set(components)


def test_unknown_route_and_method_are_problems(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = client.delete("/v1/events")
    assert wrong.status_code == 405
    assert wrong.json()["status"] == 405
