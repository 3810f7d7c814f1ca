"""Agent management: get, update the prompt, delete, list with pagination; one account never
sees another's agents."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_agent(api):
    agent_id = api.ready_agent(prompt="You are a tour guide.")
    data = api.get(f"/v1/agent/{agent_id}").json()["data"]
    assert data["code"] == data["agent_id"] == agent_id
    assert data["system_prompt"] == "You are a tour guide."
    assert data["status"] == "ready"
    assert data["model"] == "expression-1"
    assert data["name"]


def test_update_prompt(api):
    agent_id = api.generate()
    response = api.post(f"/v1/agent/{agent_id}", json={"system_prompt": "You sell shoes."})
    assert response.json() == {"agent_code": agent_id, "updated": True}
    assert api.get(f"/v1/agent/{agent_id}").json()["data"]["system_prompt"] == "You sell shoes."


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{}", "MISSING_PARAM"),
        (b'{"system_prompt": 3}', "VALIDATION_ERROR"),
        (b"nope", "VALIDATION_ERROR"),
    ],
)
def test_update_prompt_bad_bodies(api, content, code):
    agent_id = api.generate()
    response = api.post(f"/v1/agent/{agent_id}", content=content)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_delete_agent(api):
    agent_id = api.generate()
    response = api.delete(f"/v1/agent/{agent_id}")
    assert response.json() == {"success": True, "agent_code": agent_id, "deleted": True}
    response = api.get(f"/v1/agent/{agent_id}")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"Agent not found for code: {agent_id}"
    assert api.delete(f"/v1/agent/{agent_id}").status_code == 404


def test_another_accounts_agent_is_not_found(sandbox_client):
    owner, intruder = sandbox_client(), sandbox_client()
    agent_id = owner.ready_agent()
    for method, path, body in [
        ("GET", f"/v1/agent/{agent_id}", None),
        ("GET", f"/v1/agent/status/{agent_id}", None),
        ("POST", f"/v1/agent/{agent_id}", {"system_prompt": "pwned"}),
        ("DELETE", f"/v1/agent/{agent_id}", None),
        ("POST", f"/v1/agent/{agent_id}/speak", {"message": "hi"}),
        ("POST", f"/v1/agent/{agent_id}/add-context", {"context": "x"}),
        ("POST", "/v1/embed-tokens/request", {"agent_id": agent_id, "fingerprint": "ab"}),
        ("POST", "/v1/runtime-tokens/request", {"agent_code": agent_id}),
    ]:
        response = intruder.request(method, path, json=body)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["message"] == f"Agent not found for code: {agent_id}"
    assert intruder.get("/v1/agents").json()["data"] == []
    assert owner.get(f"/v1/agent/{agent_id}").json()["data"]["system_prompt"] != "pwned"


def test_list_is_paginated_newest_first(api):
    codes = [api.generate() for _ in range(5)]
    body = api.get("/v1/agents", params={"limit": 2}).json()
    assert [a["code"] for a in body["data"]] == codes[::-1][:2]
    assert body["pagination"] == {"limit": 2, "offset": 0, "total": 5, "has_more": True}
    body = api.get("/v1/agents", params={"limit": 2, "offset": 4}).json()
    assert [a["code"] for a in body["data"]] == [codes[0]]
    assert body["pagination"] == {"limit": 2, "offset": 4, "total": 5, "has_more": False}


def test_list_filters_by_current_status(api):
    old = api.generate()
    api.advance(1000)
    new = api.generate()
    ready = api.get("/v1/agents", params={"status": "ready"}).json()
    assert [a["code"] for a in ready["data"]] == [old]
    processing = api.get("/v1/agents", params={"status": "processing"}).json()
    assert [a["code"] for a in processing["data"]] == [new]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1}])
def test_list_rejects_bad_paging(api, params):
    response = api.get("/v1/agents", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
