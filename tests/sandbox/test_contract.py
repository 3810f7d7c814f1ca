"""The contract checker itself, and the answers every route shares (unknown routes, 405s)."""

import pytest

from tests.sandbox.openapi import error_schema, operation_for, spec, validate_response

pytestmark = pytest.mark.django_db(transaction=True)


def test_spec_is_bithumans_openapi():
    assert spec()["openapi"].startswith("3.1")
    assert "/v1/agent/generate" in spec()["paths"]
    assert "error" in error_schema()["properties"]


def test_literal_paths_win_over_templates():
    template, operation = operation_for("POST", "/v1/agent/generate")
    assert template == "/v1/agent/generate"
    assert operation["operationId"] == "generateAgent"
    assert operation_for("GET", "/v1/agent/A12BCD3456")[0] == "/v1/agent/{code}"
    assert operation_for("GET", "/v1/nothing/here") is None


def test_checker_rejects_invented_fields_and_wrong_types():
    good = {"success": True, "message": "started", "agent_id": "A12BCD3456", "status": "processing"}
    validate_response("POST", "/sandbox/v1/agent/generate", 200, good)
    with pytest.raises(AssertionError, match="Additional properties"):
        validate_response("POST", "/v1/agent/generate", 200, {**good, "extra": 1})
    with pytest.raises(AssertionError, match="not of type"):
        validate_response("POST", "/v1/agent/generate", 200, {**good, "success": "yes"})
    status = {"success": True, "data": {"status": "finished"}}
    with pytest.raises(AssertionError, match="is not one of"):
        validate_response("GET", "/v1/agent/status/A12BCD3456", 200, status)


def test_checker_requires_a_consistent_envelope_for_undeclared_statuses():
    envelope = {
        "error": {"code": "RATE_LIMITED", "message": "slow down", "httpStatus": 429},
        "status": "error",
        "status_code": 429,
    }
    validate_response("GET", "/v1/me", 429, envelope)
    with pytest.raises(AssertionError):
        validate_response("GET", "/v1/me", 503, envelope)
    with pytest.raises(AssertionError):
        validate_response("GET", "/v1/me", 429, {"detail": "Too many"})


def test_unknown_routes_answer_not_found(anonymous, api):
    for client in (anonymous, api):
        for method, path in [
            ("GET", "/v1/nothing"),
            ("POST", "/v1/agent/A12BCD3456/speak/extra"),
            ("GET", "/v1/agents/"),
            ("DELETE", "/v1/"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 404
            assert response.json() == {"detail": "Not Found"}


def test_known_routes_with_other_methods_answer_405(api):
    response = api.request("PUT", "/v1/agent/A12BCD3456")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert api.request("GET", "/v1/validate").status_code == 405
