"""Structured logs: every line carries the request id, organization, user or API key, task id
and agent/session ids it is about; JSON in production, readable locally; no secrets."""

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from celery import shared_task

from portal import logging as portal_logging
from tests.api.conftest import ApiClient, make_key
from tests.conftest import client_for
from tests.factories import AgentFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_log():
    """What the production console handler writes, for every logger, in a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(portal_logging.JsonFormatter())
    handler.addFilter(portal_logging.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def _request_line(lines, request_id):
    matches = [e for e in lines() if e.get("request_id") == request_id and "status" in e]
    assert len(matches) == 1, lines()
    return matches[0]


@pytest.mark.django_db
def test_a_page_request_logs_one_json_line_with_its_context(owner, json_log):
    agent = AgentFactory(organization=owner.organization)
    client = client_for(owner)
    response = client.get(f"/o/{owner.organization.slug}/agents/{agent.public_id}/")
    assert response.status_code == 200
    entry = _request_line(json_log, response["X-Request-ID"])
    assert entry["logger"] == "portal.request"
    assert entry["level"] == "INFO"
    assert entry["method"] == "GET" and entry["status"] == 200
    assert entry["org"] == owner.organization.slug
    assert entry["user_id"] == owner.user.pk
    assert entry["agent_id"] == str(agent.public_id)
    assert entry["duration_ms"] >= 0 and entry["time"].endswith("+00:00")
    assert "api_key" not in entry


@pytest.mark.django_db
def test_an_api_request_logs_the_key_prefix_never_the_key(org, json_log):
    key = make_key(org)
    response = ApiClient(key).get("/organization")
    assert response.status_code == 200
    entry = _request_line(json_log, response["X-Request-ID"])
    assert entry["org"] == org.slug
    assert key.startswith(entry["api_key"]) and len(entry["api_key"]) < len(key)
    assert "user_id" not in entry


@pytest.mark.django_db
def test_a_well_formed_incoming_request_id_is_kept_a_bad_one_replaced(client, json_log):
    kept = client.get("/login/", headers={"X-Request-ID": "lb-7f3a9c2e-0001"})
    assert kept["X-Request-ID"] == "lb-7f3a9c2e-0001"
    replaced = client.get("/login/", headers={"X-Request-ID": "bad id\nwith newline"})
    assert replaced["X-Request-ID"] != "bad id\nwith newline"
    assert len(replaced["X-Request-ID"]) == 32
    _request_line(json_log, replaced["X-Request-ID"])


@pytest.mark.django_db
def test_secret_url_parts_and_query_strings_never_reach_the_log(client, json_log):
    secret = "s3cr3t-invitation-token-value"
    response = client.get(f"/invitations/{secret}/?token=another-secret")
    entry = _request_line(json_log, response["X-Request-ID"])
    assert entry["path"] == "/invitations/[redacted]/"
    everything = json.dumps(json_log())
    assert secret not in everything and "another-secret" not in everything


def test_extras_named_like_secrets_are_redacted(json_log):
    logging.getLogger("portal.test").info("hello", extra={"api_secret": "x1", "count": 3})
    entry = json_log()[-1]
    assert entry["api_secret"] == "[redacted]" and entry["count"] == 3
    assert entry["message"] == "hello"


def test_exceptions_are_one_json_line(json_log):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("portal.test").exception("failed")
    entry = json_log()[-1]
    assert entry["level"] == "ERROR" and "ValueError: boom" in entry["exception"]


@shared_task
def _logging_probe_task(agent_pk: int, note: str = "") -> None:
    logging.getLogger("portal.test.task").info("inside the task")


def test_tasks_log_their_id_name_arguments_and_the_publishing_request(json_log):
    result = _logging_probe_task.apply(
        args=(42,), headers={"portal_request_id": "req-from-the-web-1"}
    )
    entry = next(e for e in json_log() if e["message"] == "inside the task")
    assert entry["task_id"] == result.id
    assert entry["task"].endswith("_logging_probe_task")
    assert entry["agent_id"] == 42
    assert entry["request_id"] == "req-from-the-web-1"
    # After the task, the context is gone.
    logging.getLogger("portal.test").info("after")
    assert "task_id" not in json_log()[-1]


def test_publishing_a_task_carries_the_request_id():
    headers: dict = {}
    with portal_logging.context_bind(request_id="req-abcdef123"):
        portal_logging._task_publish_add_request_id(headers=headers)
    assert headers == {"portal_request_id": "req-abcdef123"}


def test_plain_format_locally_json_in_production():
    code = (
        "import logging; from django.conf import settings;"
        "print(settings.LOG_FORMAT, settings.LOGGING['handlers']['console']['formatter'])"
    )
    env_prod = {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "k" * 60,
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "FIELD_ENCRYPTION_KEYS": "0YXN8x3YqlKGxHfhCy1AU3Fh5jXy1Q2xbyWmK2QnJ3E=",
        "DATABASE_URL": "sqlite:////tmp/portal-log-format.sqlite3",
    }
    for env, expected in (
        ({"DJANGO_DEBUG": "true"}, "plain plain"),
        (env_prod, "json json"),
        ({**env_prod, "LOG_FORMAT": "plain"}, "plain plain"),
    ):
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == expected


def test_plain_lines_end_with_the_context():
    record = logging.LogRecord("portal.x", logging.INFO, "", 0, "did %s", ("it",), None)
    portal_logging.ContextFilter().filter(record)
    with portal_logging.context_bind(request_id="req-12345678", org="acme"):
        record2 = logging.LogRecord("portal.x", logging.INFO, "", 0, "did %s", ("it",), None)
        portal_logging.ContextFilter().filter(record2)
    formatter = portal_logging.PlainFormatter()
    assert formatter.format(record).endswith("INFO portal.x: did it")
    assert formatter.format(record2).endswith("did it [request_id=req-12345678 org=acme]")
