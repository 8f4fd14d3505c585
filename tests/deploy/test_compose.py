"""Static checks of docker-compose.yml, the base Kubernetes manifests and the Dockerfile.

No Docker engine or cluster is needed: the files are parsed and their wiring
checked against what the services read (HUITOU_* settings, ports, health routes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
# The hand-written manifests; the kit around them is checked in test_k8s.py.
K8S_DIR = REPO / "deploy" / "k8s" / "base"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"

PLANNED_SERVICES = ("profile", "loyalty", "care", "aftersales")
SHARED_ENV = (
    "HUITOU_KAFKA_BOOTSTRAP",
    "HUITOU_MONGO_URI",
    "HUITOU_HTTP_HOST",
    "HUITOU_HTTP_PORT",
    "HUITOU_LOG_FORMAT",
    "HUITOU_TOPIC_PREFIX",
)
HTTP_PORT = 8000
K8S_NAMESPACE = "huitou"


def runnable_services() -> set[str]:
    """Service packages that can be started with `python -m services.<name>`."""
    return {main.parent.name for main in (REPO / "services").glob("*/__main__.py")}


SERVICES = sorted(set(PLANNED_SERVICES) | runnable_services())


def required_env(service: str) -> set[str]:
    """Every HUITOU_ variable the service must be given."""
    return {*SHARED_ENV, f"HUITOU_{service.upper()}_DATABASE"}


def env_mapping(environment: dict[str, Any] | list[str] | None) -> dict[str, str]:
    """A compose `environment` block (mapping or KEY=VALUE list) as strings."""
    if environment is None:
        return {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


@pytest.fixture(scope="module")
def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                objects.append(document)
    return objects


def objects_of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


# --- docker-compose.yml --------------------------------------------------------------


def test_kafka_is_kraft_with_auto_topic_creation_off(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    kafka = compose_services["kafka"]
    env = env_mapping(kafka["environment"])
    assert kafka["image"] == "apache/kafka:3.9.1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    # The image refuses to start in KRaft mode without a cluster id.
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", env["CLUSTER_ID"])
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["healthcheck"]["test"]


def test_mongo_is_the_official_image_with_a_healthcheck(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    mongo = compose_services["mongo"]
    assert mongo["image"] == "mongo:7.0"
    assert mongo["healthcheck"]["test"]


def test_topics_job_runs_once_after_kafka_is_healthy(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    topics = compose_services["topics"]
    assert topics["command"] == ["tools.topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics.get("restart", "no") == "no"
    assert topics["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    env = env_mapping(topics["environment"])
    assert env["HUITOU_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "HUITOU_TOPIC_PREFIX" in env
    # A single broker cannot hold more than one replica of a partition.
    assert env.get("HUITOU_KAFKA_REPLICATION_FACTOR", "1") == "1"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_every_service(
    compose_services: dict[str, dict[str, Any]], service: str
) -> None:
    assert service in compose_services, f"{service} missing from docker-compose.yml"
    definition = compose_services[service]
    assert definition["command"] == [f"services.{service}"]
    assert definition["image"] == compose_services["topics"]["image"]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_env_is_complete(
    compose_services: dict[str, dict[str, Any]], service: str
) -> None:
    env = env_mapping(compose_services[service]["environment"])
    missing = required_env(service) - env.keys()
    assert not missing, f"{service} lacks {sorted(missing)}"
    assert env["HUITOU_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["HUITOU_MONGO_URI"].startswith("mongodb://mongo:27017")
    assert env["HUITOU_HTTP_HOST"] == "0.0.0.0"
    assert env["HUITOU_HTTP_PORT"] == str(HTTP_PORT)
    assert env["HUITOU_LOG_FORMAT"] in {"json", "console"}
    assert env["HUITOU_TOPIC_PREFIX"] == ""
    assert env[f"HUITOU_{service.upper()}_DATABASE"] == f"huitou_{service}"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_waits_for_topics_and_mongo(
    compose_services: dict[str, dict[str, Any]], service: str
) -> None:
    depends_on = compose_services[service]["depends_on"]
    assert depends_on["topics"]["condition"] == "service_completed_successfully"
    assert depends_on["mongo"]["condition"] == "service_healthy"


def test_compose_services_publish_distinct_host_ports(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    host_ports = []
    for service in SERVICES:
        (mapping,) = compose_services[service]["ports"]
        host, container = str(mapping).rsplit(":", 1)
        assert container == str(HTTP_PORT), f"{service} maps {mapping}"
        host_ports.append(host.rsplit(":", 1)[-1])
    assert len(set(host_ports)) == len(host_ports), host_ports


# --- deploy/k8s ----------------------------------------------------------------------


def test_k8s_manifests_are_well_formed(k8s_objects: list[dict[str, Any]]) -> None:
    assert k8s_objects
    for obj in k8s_objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == K8S_NAMESPACE, obj["metadata"]
    assert K8S_NAMESPACE in objects_of_kind(k8s_objects, "Namespace")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    manifests = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deploys_every_service(k8s_objects: list[dict[str, Any]], service: str) -> None:
    deployments = objects_of_kind(k8s_objects, "Deployment")
    assert service in deployments, f"no Deployment for {service}"
    (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [f"services.{service}"]

    services = objects_of_kind(k8s_objects, "Service")
    assert service in services, f"no Service for {service}"
    pod_labels = deployments[service]["spec"]["template"]["metadata"]["labels"]
    selector = services[service]["spec"]["selector"]
    assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_service_env_is_complete(k8s_objects: list[dict[str, Any]], service: str) -> None:
    config_maps = objects_of_kind(k8s_objects, "ConfigMap")
    (container,) = objects_of_kind(k8s_objects, "Deployment")[service]["spec"]["template"]["spec"][
        "containers"
    ]
    provided = {entry["name"] for entry in container.get("env", [])}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"{service} reads missing ConfigMap {name}"
        provided |= config_maps[name]["data"].keys()
    missing = required_env(service) - provided
    assert not missing, f"{service} lacks {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_runs_in_production_with_secrets_from_secrets(
    k8s_objects: list[dict[str, Any]], service: str
) -> None:
    assert objects_of_kind(k8s_objects, "ConfigMap")["huitou-env"]["data"]["HUITOU_ENV"] == (
        "production"
    )
    (container,) = objects_of_kind(k8s_objects, "Deployment")[service]["spec"]["template"]["spec"][
        "containers"
    ]
    from_secrets = {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]["name"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert from_secrets["HUITOU_AUTH_SECRET"] == "huitou-auth"
    if service == "profile":
        for key in ("PII_KEYS", "PII_ACTIVE_KEY_ID", "BLIND_INDEX_KEY"):
            assert from_secrets[f"HUITOU_PROFILE_{key}"] == "huitou-profile-keys"
    if service == "aftersales":
        for key in ("TEXT_KEYS", "TEXT_ACTIVE_KEY_ID"):
            assert from_secrets[f"HUITOU_AFTERSALES_{key}"] == "huitou-aftersales-keys"


def test_k8s_deployments_have_probes_limits_and_run_as_non_root(
    k8s_objects: list[dict[str, Any]],
) -> None:
    deployments = objects_of_kind(k8s_objects, "Deployment")
    assert deployments
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            for probe_name, path in (
                ("livenessProbe", "/health/live"),
                ("readinessProbe", "/health/ready"),
            ):
                probe = container.get(probe_name)
                assert probe, f"{name}: no {probe_name}"
                assert probe["httpGet"]["path"] == path, f"{name}: {probe_name}"
                port = probe["httpGet"]["port"]
                assert ports.get(port, port) == HTTP_PORT, f"{name}: {probe_name} port"
            assert container["resources"]["requests"] and container["resources"]["limits"]
            non_root = container.get("securityContext", {}).get(
                "runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot")
            )
            assert non_root is True, f"{name}: runAsNonRoot not set"


def test_k8s_topics_job_creates_topics_as_non_root(k8s_objects: list[dict[str, Any]]) -> None:
    jobs = objects_of_kind(k8s_objects, "Job")
    assert jobs, "no Job creating the topics"
    (job,) = jobs.values()
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["tools.topics", "create"]
    assert pod["securityContext"]["runAsNonRoot"] is True


# --- deploy/docker/Dockerfile --------------------------------------------------------


def test_dockerfile_builds_one_non_root_image_for_all_services() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "uv sync --frozen --no-dev" in text
    assert 'ENTRYPOINT ["python", "-m"]' in text
    assert 'CMD ["services.loyalty"]' in text
    assert re.search(rf"^EXPOSE {HTTP_PORT}$", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert "/health/live" in text.split("HEALTHCHECK", 1)[1]
