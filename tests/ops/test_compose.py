"""docker/compose.yaml, read as data: services, exposure, secrets, and the commands they run."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.ops.test_entrypoint import command

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
OURS = ("ray-head", "ray-worker", "migrate", "web", "worker", "celery-worker", "beat")
RAY_CLIENTS = ("ray-head", "ray-worker", "worker", "celery-worker")
# ${NAME:?message} and ${NAME:-default}, as compose interpolates them.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[?-])(?P<arg>[^}]*))?\}")


def interpolate(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        found = variables.get(match["name"], "")
        if found or match["op"] is None:
            return found
        if match["op"] == "?":
            raise KeyError(f"{match['name']}: {match['arg']}")
        return match["arg"]

    return VARIABLE.sub(replace, text)


def environment(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in SERVICES[service].get("environment", {}).items()}


def test_the_stack_has_every_service():
    assert set(SERVICES) == {"postgres", "redis", *OURS}


def test_one_image_built_from_the_repository_for_all_our_services():
    for name in OURS:
        service = SERVICES[name]
        assert service["image"] == "django-ray-sample:latest", name
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
    assert (DOCKER / ".." / "docker" / "Dockerfile").is_file()


def test_only_the_web_app_is_published_and_only_on_loopback():
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}

    assert published == {"web": ["127.0.0.1:8000:8000"]}


def test_ray_runs_with_token_auth_and_the_token_comes_from_a_secret_file():
    assert COMPOSE["secrets"] == {"ray_auth_token": {"environment": "RAY_AUTH_TOKEN"}}
    for name in RAY_CLIENTS:
        env = environment(name)
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token", name
        assert SERVICES[name]["secrets"] == ["ray_auth_token"], name
    for name in SERVICES:
        assert "RAY_AUTH_TOKEN" not in environment(name), name


def test_the_ray_cluster_is_a_head_and_a_worker_node_that_joins_it():
    assert SERVICES["ray-head"]["command"] == ["ray-head"]
    assert SERVICES["ray-worker"]["command"] == ["ray-node"]
    assert environment("ray-worker")["RAY_HEAD_ADDRESS"] == "ray-head:6379"
    assert set(SERVICES["ray-head"]["expose"]) == {"6379", "10001", "8265"}


def test_ray_clients_in_their_own_containers_use_ray_client():
    # A driver that joins by the GCS address needs a Ray node in its own
    # container (Ray looks for a local raylet); these containers run none.
    for name in ("worker", "celery-worker"):
        assert environment(name)["RAY_ADDRESS"] == "ray://ray-head:10001", name


def test_no_service_that_does_not_talk_to_ray_holds_its_token():
    for name in set(SERVICES) - set(RAY_CLIENTS):
        assert "secrets" not in SERVICES[name], name


def test_secrets_are_required_variables_never_values():
    for name in SERVICES:
        for key, value in environment(name).items():
            if key in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"):
                assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", value), (name, key, value)


def test_env_example_names_every_required_variable_and_holds_no_value():
    required = set(re.findall(r"\$\{(\w+):\?", (DOCKER / "compose.yaml").read_text()))
    example = (DOCKER / ".env.example").read_text().splitlines()
    assignments = dict(line.split("=", 1) for line in example if line and not line.startswith("#"))

    assert required == {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"}
    assert assignments == {"DJANGO_SECRET_KEY": "", "POSTGRES_PASSWORD": "", "RAY_AUTH_TOKEN": ""}


def test_env_file_is_ignored_by_git():
    assert ".env" in (DOCKER / ".gitignore").read_text().splitlines()


def test_start_order():
    def depends(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in SERVICES[name]["depends_on"].items()}

    assert depends("migrate") == {"postgres": "service_healthy"}
    assert depends("web") == {"migrate": "service_completed_successfully"}
    assert depends("worker") == {
        "migrate": "service_completed_successfully",
        "ray-head": "service_healthy",
    }
    assert depends("ray-worker") == {"ray-head": "service_healthy"}
    assert depends("celery-worker")["redis"] == "service_healthy"
    for name in ("postgres", "redis", "ray-head"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD", name


VARIABLES = {"DJANGO_SECRET_KEY": "k", "POSTGRES_PASSWORD": "p"}
EXPECTED = {
    "ray-head": "ray start --head --port=6379 --dashboard-host=0.0.0.0 --dashboard-port=8265 "
    "--disable-usage-stats --block",
    "ray-worker": "ray start --address=ray-head:6379 --disable-usage-stats --block",
    "migrate": "python manage.py migrate --noinput",
    "web": "gunicorn sample_project.wsgi --bind 0.0.0.0:8000 --workers 2 --access-logfile -",
    "worker": "python manage.py django_ray_worker --queue default,cpu --concurrency 8 "
    "--address ray://ray-head:10001 --metrics-port 9100 --metrics-address 0.0.0.0 --ray-core",
    "celery-worker": "celery -A sample_project worker -P prefork -l INFO",
    "beat": "celery -A sample_project beat -l INFO --schedule /tmp/celerybeat-schedule",
}


@pytest.mark.parametrize("name", OURS)
def test_each_service_runs_what_its_environment_says(name, tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    env = {key: interpolate(value, VARIABLES) for key, value in environment(name).items()}
    if "RAY_AUTH_TOKEN_PATH" in env:
        env["RAY_AUTH_TOKEN_PATH"] = str(token)

    assert command(*SERVICES[name]["command"], **env) == shlex.split(EXPECTED[name])


def test_the_image_ignores_everything_it_does_not_copy():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    lines = (DOCKER / "Dockerfile").read_text().splitlines()
    copied = [src for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]]

    assert ignore[1] == "**"
    assert copied == [
        "pyproject.toml",
        "README.md",
        "django_ray",
        "celery_bridge",
        "sample_project",
        "docker/entrypoint.sh",
    ]
    for source in copied:
        assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source


def test_the_image_installs_celery_through_the_projects_own_extra():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert 'pip install ".[postgres,object-storage,celery]"' in dockerfile
    assert "celery[" not in dockerfile  # no second, drifting pin of Celery
    assert "celery" in pyproject["project"]["optional-dependencies"]
