"""The container files, checked without a Docker engine: the compose file against the compose
specification (offline) and what the schema cannot see; the Dockerfile with hadolint and our own
rules; docker/.env.example documents every setting."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(__import__("sys").executable).parent
SERVICES = {"web", "worker", "beat", "postgres", "redis", "migrate"}
PORTAL_ROLES = {"web", "worker", "beat", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_file_validates_against_the_compose_specification():
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DOCKER / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_promised_services(compose):
    assert set(compose["services"]) == SERVICES


def test_every_depends_on_names_a_service(compose):
    for name, service in compose["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
            assert dependency != name


def test_every_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert check["test"], name


def test_beat_is_never_scaled_web_and_worker_can_be(compose):
    beat = compose["services"]["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert beat.get("scale", 1) == 1
    for name in ("web", "worker"):
        service = compose["services"][name]
        # A fixed container name or a single host port would make --scale fail.
        assert "container_name" not in service, name
        for port in service.get("ports", []):
            host_part = str(port).rsplit(":", 1)[0]
            assert "-" in host_part, f"{name} publishes a single host port: {port}"


def test_portal_roles_share_one_image_and_wait_for_their_dependencies(compose):
    services = compose["services"]
    images = {services[r]["image"] for r in PORTAL_ROLES}
    assert len(images) == 1
    for role in PORTAL_ROLES - {"migrate"}:
        conditions = services[role]["depends_on"]
        assert conditions["migrate"]["condition"] == "service_completed_successfully"
        assert conditions["postgres"]["condition"] == "service_healthy"
        assert conditions["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    # Volumes for the database and media.
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert any(v.startswith("media:") for v in services["web"]["volumes"])


def test_graceful_stop_periods_cover_the_timeouts(compose):
    services = compose["services"]
    seconds = {
        n: int(str(s.get("stop_grace_period", "10s")).rstrip("s")) for n, s in services.items()
    }
    gunicorn = (DOCKER / "gunicorn.conf.py").read_text()
    graceful = int(re.search(r'GUNICORN_GRACEFUL_TIMEOUT", "(\d+)"', gunicorn).group(1))
    assert seconds["web"] > graceful
    # Celery's hard time limit is the soft one (60 s by default) + 30 s.
    assert seconds["worker"] > 60 + 30


def test_health_check_commands_exist_in_the_image(compose):
    for name in PORTAL_ROLES - {"migrate"}:
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "docker/healthcheck.py"]
        assert test[3] in {"web", "worker", "beat"}


def test_env_example_documents_every_setting():
    example = (DOCKER / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    settings_text = (ROOT / "portal" / "settings.py").read_text()
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_][A-Z0-9_]*)"', settings_text))
    for conf in ROOT.glob("portal/*/conf.py"):
        read |= set(re.findall(r'env\.\w+\(\s*"([A-Z_][A-Z0-9_]*)"', conf.read_text()))
    compose_vars = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (DOCKER / "compose.yaml").read_text()))
    # Set by compose itself from the POSTGRES_* values and service names.
    derived = {"DATABASE_URL", "REDIS_URL"}
    missing = sorted((read | compose_vars) - derived - documented)
    assert not missing, f"document these in docker/.env.example: {missing}"


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_rules_hadolint_does_not_check():
    text = (DOCKER / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(bases) >= 2, "multi-stage build"
    for base in bases:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), f"pin the base: {base}"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] != "0" and users[-1] != "root"
    assert "collectstatic --noinput" in text
    assert "gunicorn" in text.split("CMD")[-1]
    assert "requirements/prod.txt" in text
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for pattern in ("**/.env", ".git", ".venv", "var"):
        assert pattern in ignore, f"{pattern} must stay out of the image"
