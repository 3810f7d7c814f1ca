"""Property-based run of schemathesis against the live API's own OpenAPI schema."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from organizations import apikeys
from portal.models import ApiScope
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_schemathesis_finds_no_server_error_nor_schema_violation(
    sandbox_api, live_server, org, settings, tmp_path
):
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000
    AgentFactory.create_batch(3, organization=org)
    key = apikeys.api_key_create(
        org=org, name="fuzz", scopes=list(ApiScope.values), created_by=None
    ).key
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    result = subprocess.run(
        [
            st,
            "run",
            f"{live_server.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,response_schema_conformance,ignored_auth",
            "--max-examples",
            os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"),
            "--max-time",
            "60",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
