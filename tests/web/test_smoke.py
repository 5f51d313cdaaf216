from tests.support import an_event


def test_post_then_read(client, tenant):
    event = an_event()
    r = client.post("/v1/events?wait=sequenced", json=event, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()["sequenced"][0]["seq"] == 0
    r = client.get(f"/v1/events/{event['id']}", headers=tenant.auth())
    assert r.status_code == 200
    assert r.json()["tenant"] == tenant.name
