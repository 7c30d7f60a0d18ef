"""deploy/kubernetes, read as data: what the manifests promise the image, the settings and
each other, checked against the files that keep those promises.

No cluster is needed. The schemas of Kubernetes' own kinds come with kubernetes-validate;
the RayCluster's pod templates are validated as pod templates. kubectl, where installed,
renders the kustomization and runs the documented Secret commands as client dry runs.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from django_ray.addresses import classify_ray_address
from tests.ops.test_entrypoint import command

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
EXAMPLE = MANIFESTS / "secrets.example.yaml"
KUSTOMIZATION = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed here")
# The oldest Kubernetes these manifests are checked against, and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


OBJECTS = {
    (doc["kind"], doc["metadata"]["name"]): doc
    for name in KUSTOMIZATION["resources"]
    for doc in load(MANIFESTS / name)
}
SECRETS = {doc["metadata"]["name"]: doc for doc in load(EXAMPLE)}
CONFIG = OBJECTS["ConfigMap", "django-ray"]["data"]
RAY = OBJECTS["RayCluster", "ray"]
WORKER = OBJECTS["Deployment", "django-ray-worker"]
WEB = OBJECTS["Deployment", "django-ray-web"]
MIGRATE = OBJECTS["Job", "django-ray-migrate"]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template of the stack, by a name for messages."""
    yield "ray head", RAY["spec"]["headGroupSpec"]["template"]["spec"]
    for group in RAY["spec"]["workerGroupSpecs"]:
        yield f"ray group {group['groupName']}", group["template"]["spec"]
    for workload in (WORKER, WEB, MIGRATE):
        yield workload["metadata"]["name"], workload["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for pod, spec in pod_specs():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{pod}/{container['name']}", container


def values(container: dict[str, Any]) -> dict[str, str]:
    """A container's literal env values."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """A container's env read from Secrets: name -> (secret, key)."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def read_by_settings() -> set[str]:
    """The environment variables sample_project's settings read (os.environ and _env_list)."""
    tree = ast.parse((ROOT / "sample_project" / "sample_project" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            callee = ast.unparse(node.func)
            if callee in ("os.environ.get", "_env_list"):
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            names.add(ast.literal_eval(node.slice))
    return names


SETTINGS_ENV = read_by_settings()
ENTRYPOINT_ENV = set(re.findall(r"\$\{(\w+)", (ROOT / "docker" / "entrypoint.sh").read_text()))
# Read by Ray itself in every Ray process and client.
RAY_ENV = {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
DATABASE_ENV = {f"POSTGRES_{name}" for name in ("HOST", "PORT", "DB", "USER", "PASSWORD")}


def test_the_kustomization_applies_every_manifest_but_the_secret_example():
    manifests = {p.name for p in MANIFESTS.glob("*.yaml")}

    assert set(KUSTOMIZATION["resources"]) == manifests - {"kustomization.yaml", EXAMPLE.name}
    assert KUSTOMIZATION["namespace"] == "django-ray"
    assert {(kind, doc["apiVersion"]) for (kind, _), doc in OBJECTS.items()} == {
        ("Namespace", "v1"),
        ("ConfigMap", "v1"),
        ("RayCluster", "ray.io/v1"),
        ("Job", "batch/v1"),
        ("Deployment", "apps/v1"),
        ("Service", "v1"),
        ("NetworkPolicy", "networking.k8s.io/v1"),
    }


def test_the_ray_cluster_runs_the_ray_of_this_project_with_a_head_that_runs_no_task():
    spec = RAY["spec"]

    assert set(spec) == {"rayVersion", "headGroupSpec", "workerGroupSpecs"}
    assert spec["rayVersion"] == version("ray")
    assert set(spec["headGroupSpec"]) == {"rayStartParams", "template"}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    [group] = spec["workerGroupSpecs"]
    assert set(group) == {
        *("groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"),
    }
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"


def test_every_ray_process_and_client_uses_token_auth_with_the_token_from_the_secret():
    ray_containers = [
        RAY["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0],
        *(g["template"]["spec"]["containers"][0] for g in RAY["spec"]["workerGroupSpecs"]),
        WORKER["spec"]["template"]["spec"]["containers"][0],
    ]
    for container in ray_containers:
        assert values(container)["RAY_AUTH_MODE"] == "token", container["name"]
        assert secret_refs(container)["RAY_AUTH_TOKEN"] == ("django-ray-ray-auth", "auth_token")
    for name, container in containers():
        if container not in ray_containers:
            assert not RAY_ENV & {e["name"] for e in container["env"]}, name


def test_every_django_process_gets_its_secret_key_database_and_settings_from_one_place():
    for name, container in containers():
        refs = secret_refs(container)
        assert refs["DJANGO_SECRET_KEY"] == ("django-ray-django", "DJANGO_SECRET_KEY"), name
        assert {var: refs.get(var) for var in DATABASE_ENV} == {
            var: ("django-ray-postgres", var) for var in DATABASE_ENV
        }, name
        assert container["envFrom"] == [{"configMapRef": {"name": "django-ray"}}], name


def test_the_database_secret_holds_what_the_settings_read():
    postgres = {name for name in SETTINGS_ENV if name.startswith("POSTGRES_")}

    # POSTGRES_CONN_MAX_AGE keeps its default.
    assert postgres - {"POSTGRES_CONN_MAX_AGE"} == DATABASE_ENV
    assert set(SECRETS["django-ray-postgres"]["stringData"]) == DATABASE_ENV
    assert "DJANGO_SECRET_KEY" in SETTINGS_ENV


def test_every_variable_set_is_read_by_the_settings_the_entrypoint_or_ray():
    read = SETTINGS_ENV | ENTRYPOINT_ENV | RAY_ENV

    assert set(CONFIG) <= SETTINGS_ENV
    for name, container in containers():
        assert {e["name"] for e in container["env"]} <= read, name


def test_every_secret_reference_names_a_key_of_the_secret_example():
    for name, container in containers():
        for secret, key in secret_refs(container).values():
            assert key in SECRETS[secret]["stringData"], (name, secret, key)


def test_the_secret_example_holds_placeholders_only():
    for secret in SECRETS.values():
        assert secret["metadata"]["namespace"] == KUSTOMIZATION["namespace"]
        assert "data" not in secret
    secrets = [
        SECRETS["django-ray-django"]["stringData"]["DJANGO_SECRET_KEY"],
        SECRETS["django-ray-postgres"]["stringData"]["POSTGRES_PASSWORD"],
        SECRETS["django-ray-ray-auth"]["stringData"]["auth_token"],
    ]
    assert all(value.startswith("REPLACE-") for value in secrets)


def test_the_worker_joins_the_head_service_through_ray_client():
    [head] = RAY["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    client_port = {p["name"]: p["containerPort"] for p in head["ports"]}["client"]
    address = values(WORKER["spec"]["template"]["spec"]["containers"][0])["RAY_ADDRESS"]

    # KubeRay names the head's Service after the cluster.
    assert address == f"ray://{RAY['metadata']['name']}-head-svc:{client_port}"
    assert classify_ray_address(address) == "client"
    # The sample settings map RAY_ADDRESS into DJANGO_RAY["RAY_ADDRESS"].
    assert "RAY_ADDRESS" in SETTINGS_ENV


def test_the_worker_runs_what_its_environment_says():
    [worker] = WORKER["spec"]["template"]["spec"]["containers"]

    assert command(*worker["args"], **values(worker)) == shlex.split(
        "python manage.py django_ray_worker --queue default,cpu --concurrency 8 "
        "--address ray://ray-head-svc:10001 --metrics-port 9100 --metrics-address 0.0.0.0 "
        "--ray-core --grace-seconds 60"
    )


def test_kubernetes_waits_longer_than_the_worker_gives_its_tasks():
    spec = WORKER["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    grace = int(args[args.index("--grace-seconds") + 1])

    assert spec["terminationGracePeriodSeconds"] > grace


def test_the_worker_probes_its_metrics_port():
    [worker] = WORKER["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}

    assert ports["metrics"] == int(values(worker)["DJANGO_RAY_METRICS_PORT"])
    for probe in ("startupProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe


def test_the_web_probes_pass_djangos_host_and_https_checks():
    [web] = WEB["spec"]["template"]["spec"]["containers"]
    allowed = CONFIG["DJANGO_ALLOWED_HOSTS"].split(",")

    assert CONFIG["DJANGO_HTTPS"] == "1"
    for probe in ("readinessProbe", "livenessProbe"):
        headers = {h["name"]: h["value"] for h in web[probe]["httpGet"]["httpHeaders"]}
        assert headers == {"Host": allowed[0], "X-Forwarded-Proto": "https"}, probe


def test_the_web_service_reaches_the_web_pods():
    service = OBJECTS["Service", "django-ray-web"]["spec"]
    [web] = WEB["spec"]["template"]["spec"]["containers"]

    assert service["selector"] == WEB["spec"]["template"]["metadata"]["labels"]
    assert service["ports"][0]["targetPort"] in {p["name"] for p in web["ports"]}
    assert values(web)["PORT"] == str(web["ports"][0]["containerPort"])


def test_web_and_workers_wait_for_the_migrations_and_the_job_runs_them():
    for workload in (WORKER, WEB):
        [wait] = workload["spec"]["template"]["spec"]["initContainers"]
        assert "python manage.py migrate --check" in wait["args"][-1]
    assert MIGRATE["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert command("migrate") == ["python", "manage.py", "migrate", "--noinput"]


def test_only_ray_pods_and_django_ray_workers_reach_the_ray_pods():
    policy = OBJECTS["NetworkPolicy", "ray-cluster"]["spec"]
    ray_pods = {"ray.io/cluster": RAY["metadata"]["name"]}
    peers, workers = policy["ingress"]

    assert policy["podSelector"]["matchLabels"] == ray_pods
    assert peers == {"from": [{"podSelector": {"matchLabels": ray_pods}}]}
    assert workers["from"] == [
        {"podSelector": {"matchLabels": WORKER["spec"]["template"]["metadata"]["labels"]}}
    ]
    assert {p["port"] for p in workers["ports"]} == {10001, 8265}


def test_every_pod_runs_the_one_image_as_the_images_user():
    [image] = KUSTOMIZATION["images"]
    for name, container in containers():
        assert container["image"] == f"{image['name']}:{image['newTag']}", name
    for name, spec in pod_specs():
        assert spec["securityContext"]["runAsUser"] == 10001, name
    assert "useradd --create-home --uid 10001 app" in (ROOT / "docker" / "Dockerfile").read_text()


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(kubernetes):
    for (kind, _), doc in OBJECTS.items():
        if kind != "RayCluster":
            kubernetes_validate.validate(doc, kubernetes, strict=True)
    for _, spec in pod_specs():
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
        kubernetes_validate.validate({**template, "template": {"spec": spec}}, kubernetes, True)
    for secret in SECRETS.values():
        kubernetes_validate.validate(secret, kubernetes, strict=True)


def test_the_schema_check_rejects_a_misspelt_field():
    broken = {**WORKER, "spec": {**WORKER["spec"], "replica": 2}}

    with pytest.raises(kubernetes_validate.ValidationError, match="'replica' was unexpected"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def kubectl(*args: str, cwd: Path | None = None) -> str:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_kubectl
def test_kubectl_renders_the_kustomization_and_sets_the_image_everywhere(tmp_path):
    copy = tmp_path / "kubernetes"
    shutil.copytree(MANIFESTS, copy)
    kustomization = copy / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace('newTag: "1.0"', 'newTag: "2.5"'))

    rendered = list(yaml.safe_load_all(kubectl("kustomize", str(copy))))
    images = re.findall(r"image: (\S+)", yaml.safe_dump_all(rendered))

    assert {(doc["kind"], doc["metadata"]["name"]) for doc in rendered} == set(OBJECTS)
    assert {doc["metadata"].get("namespace") for doc in rendered if doc["kind"] != "Namespace"} == {
        "django-ray"
    }
    assert len(images) == len(list(containers()))
    assert set(images) == {"registry.example/django-ray-sample:2.5"}


def documented_secret_commands() -> list[list[str]]:
    """The `kubectl create secret` commands of docs/deployment.md, shell substitutions
    replaced by a literal."""
    text = (ROOT / "docs" / "deployment.md").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        shlex.split(re.sub(r'"\$\(.*?\)"|"\$\w+"', "x", line))
        for line in lines
        if line.startswith("kubectl create secret ")
    ]


SECRET_COMMANDS = documented_secret_commands()


def test_the_documented_secret_commands_create_the_secrets_the_manifests_read():
    created = {}
    for argv in SECRET_COMMANDS:
        name = argv[4]
        keys = {a.split("=", 2)[1] for a in argv if a.startswith("--from-literal=")}
        created[name] = keys

    assert created == {name: set(doc["stringData"]) for name, doc in SECRETS.items()}


@needs_kubectl
def test_the_documented_secret_commands_pass_a_kubectl_client_dry_run():
    assert len(SECRET_COMMANDS) == len(SECRETS)
    for argv in SECRET_COMMANDS:
        out = yaml.safe_load(kubectl(*argv[1:], "--dry-run=client", "-o", "yaml"))
        secret = SECRETS[out["metadata"]["name"]]

        assert out["metadata"]["namespace"] == secret["metadata"]["namespace"]
        assert set(out["data"]) == set(secret["stringData"])
