"""Production settings as a real process loads them: headers, cookies, the sandbox check."""

from __future__ import annotations

import json
import re

from tests.portal.test_settings import PROD_ENV, _manage

# Runs inside `manage.py shell` with production settings: one HTTPS page, one plain-HTTP request.
_PROBE = """
import json
from django.test import Client
from django.conf import settings
from django.test import override_settings
storages = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # no collectstatic here
client = Client()
with override_settings(STORAGES=storages):
    page = client.get("/login/", secure=True, HTTP_HOST="portal.example.com")
    plain = client.get("/login/", HTTP_HOST="portal.example.com")
print(json.dumps({
    "status": page.status_code,
    "headers": dict(page.headers),
    "body": page.content.decode(),
    "cookies": {name: {"secure": bool(c["secure"]), "path": c["path"], "domain": c["domain"],
                       "httponly": bool(c["httponly"]), "samesite": c["samesite"]}
                for name, c in page.cookies.items()},
    "session_cookie": [settings.SESSION_COOKIE_NAME, settings.SESSION_COOKIE_SECURE,
                       settings.SESSION_COOKIE_HTTPONLY, settings.SESSION_COOKIE_DOMAIN],
    "plain": [plain.status_code, plain.headers.get("Location", "")],
}))
"""


def _probe() -> dict:
    result = _manage("shell", "-c", _PROBE, env=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_responses_carry_the_security_headers_and_host_only_cookies():
    probe = _probe()
    assert probe["status"] == 200
    headers = {name.lower(): value for name, value in probe["headers"].items()}
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cross-origin-opener-policy"] == "same-origin"

    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert "'unsafe-inline'" not in " ".join(csp["script-src"] + csp["style-src"])
    nonces = [source for source in csp["script-src"] if source.startswith("'nonce-")]
    assert len(nonces) == 1
    nonce = nonces[0].removeprefix("'nonce-").removesuffix("'")
    scripts = re.findall(r"<script\b[^>]*>", probe["body"])
    assert any(f'nonce="{nonce}"' in tag for tag in scripts)  # the page uses its nonce
    for tag in scripts:  # inline scripts need the nonce; files come from our own origin
        source = re.search(r'src="([^"]*)"', tag)
        assert (source and source.group(1).startswith("/static/")) or f'nonce="{nonce}"' in tag

    # __Host- cookies: Secure, Path=/, no Domain (bound to this exact host).
    assert set(probe["cookies"]) == {"__Host-csrftoken"}
    csrf = probe["cookies"]["__Host-csrftoken"]
    assert csrf["secure"] and csrf["path"] == "/" and not csrf["domain"]
    assert probe["session_cookie"] == ["__Host-sessionid", True, True, None]
    # Plain HTTP is redirected to HTTPS.
    assert probe["plain"] == [301, "https://portal.example.com/login/"]


def test_a_second_response_gets_a_fresh_nonce():
    first, second = _probe(), _probe()
    assert (
        first["headers"]["Content-Security-Policy"] != second["headers"]["Content-Security-Policy"]
    )


def test_check_deploy_warns_when_the_sandbox_is_enabled_in_production():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", env={**PROD_ENV, "SANDBOX_ENABLED": "true"}
    )
    assert result.returncode != 0
    assert "portal.W001" in result.stderr + result.stdout
    assert "SANDBOX_ENABLED is true while DEBUG is false" in result.stderr + result.stdout
