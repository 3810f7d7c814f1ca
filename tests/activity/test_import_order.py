"""The hooks that borrow the API's serializers work in a process that never loaded the URLconf
(a script, `manage.py shell`, a worker started with CELERY_SKIP_CHECKS): portal.api registers the
apps' routers by name, so importing agents.api or sessions.api first used to fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "hook_import",
    [
        "services._api_loaded(); from agents.api import agent_out",
        "services._api_loaded(); from sessions.api import session_out, event_out",
    ],
)
def test_the_api_serializers_import_first_in_a_fresh_process(hook_import: str):
    code = (
        "import django; django.setup()\n"
        "import sys\n"
        "from activity import services\n"
        "assert 'portal.urls' not in sys.modules\n"
        f"{hook_import}\n"
        "print('ok')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
