"""The Kubernetes kit: generated files up to date, derived from the registry, and valid.

deploy/k8s (with the Strimzi and KEDA components) and deploy/k8s/base (without them) are
rendered with kustomize, as `kubectl apply -k` would, and every resource is validated
offline: custom resources against the CRDs in deploy/k8s/crds, built-in kinds against
Kubernetes' own schemas (tests/deploy/kube.py).
"""

from __future__ import annotations

import copy
import importlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.contracts.topics import (
    AFTERSALES_TRIAGE,
    ALL_TOPICS,
    CRM_COMPLAINTS,
    SERVICES,
    TOOL_TOPICS,
    kafka_config,
)
from shared.settings import ServiceSettings
from tests.deploy.kube import K8S_DIR, RenderError, Resource, problems, render
from tools import k8s

pytestmark = pytest.mark.unit

BASE_DIR = K8S_DIR / "base"
# The project's measured ceiling of peak RSS per service instance (docs/infrastructure.md).
PEAK_RSS_BYTES = 250 * 1000 * 1000
QUANTITY = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<unit>Ki|Mi|Gi|k|M|G|m)?$")
UNITS = {None: 1, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9}
UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (256Mi, 100m, "1") as a number of bytes or cores."""
    match = QUANTITY.match(str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match["number"]) * UNITS[match["unit"]]


@pytest.fixture(scope="module")
def kit() -> list[Resource]:
    return render(K8S_DIR)


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return render(BASE_DIR)


def of_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def environment(resources: list[Resource], deployment: Resource) -> dict[str, str]:
    """The plain variables a Deployment's container gets, read here independently."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config_maps = of_kind(resources, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= config_maps[source["configMapRef"]["name"]]["data"]
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return env


def settings_from(env: dict[str, str]) -> ServiceSettings:
    return ServiceSettings.model_construct(
        topic_prefix=env.get("HUITOU_TOPIC_PREFIX", ""),
        consumer_group=env.get("HUITOU_CONSUMER_GROUP"),
    )


def copy_kit(tmp_path: Path) -> Path:
    target = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, target)
    return target


def edit_yaml(path: Path, change: Any) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d]
    for document in documents:
        change(document)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), "utf-8")


# --- the generator -------------------------------------------------------------------


def test_committed_files_are_the_generated_ones() -> None:
    assert k8s.stale_files(K8S_DIR) == [], "run `python -m tools.k8s write` and commit"


def test_check_names_each_file_that_differs(tmp_path: Path) -> None:
    kit = copy_kit(tmp_path)
    k8s.main(["check", "--directory", str(kit)])
    (kit / k8s.SCALED_OBJECTS_FILE).write_text("# edited by hand\n", "utf-8")
    (kit / k8s.BUDGETS_FILE).unlink()
    with pytest.raises(SystemExit) as stopped:
        k8s.main(["check", "--directory", str(kit)])
    message = str(stopped.value)
    assert k8s.SCALED_OBJECTS_FILE in message and k8s.BUDGETS_FILE in message
    assert k8s.KAFKA_TOPICS_FILE not in message
    k8s.main(["write", "--directory", str(kit)])
    assert k8s.stale_files(kit) == []


def test_the_settings_of_the_manifests_reach_groups_and_topics(tmp_path: Path) -> None:
    kit = copy_kit(tmp_path)

    def prefix_and_batch(document: dict[str, Any]) -> None:
        document["data"]["HUITOU_TOPIC_PREFIX"] = "staging-"
        document["data"]["HUITOU_CONSUMER_MAX_RECORDS"] = "200"

    edit_yaml(kit / "base" / "config.yaml", prefix_and_batch)
    assert set(k8s.stale_files(kit)) == {k8s.SCALED_OBJECTS_FILE, k8s.KAFKA_TOPICS_FILE}
    k8s.write_files(kit)
    rendered = render(kit)
    for scaled in of_kind(rendered, "ScaledObject").values():
        trigger = scaled["spec"]["triggers"][0]["metadata"]
        assert trigger["consumerGroup"] == f"staging-huitou-{scaled['metadata']['name']}"
        assert all(t.startswith("staging-") for t in trigger["topic"].split(","))
        assert int(trigger["lagThreshold"]) == k8s.LAG_BATCHES_PER_REPLICA * 200
    names = {t["spec"]["topicName"] for t in of_kind(rendered, "KafkaTopic").values()}
    assert names == {f"staging-{t.name}" for t in (*ALL_TOPICS, *TOOL_TOPICS)}


def test_a_service_scales_no_further_than_its_smallest_topic() -> None:
    settings = k8s.ManifestSettings.of({})
    consumer = k8s.consumer_of("aftersales", (CRM_COMPLAINTS, AFTERSALES_TRIAGE), settings)
    assert AFTERSALES_TRIAGE.partitions < CRM_COMPLAINTS.partitions
    assert consumer.max_replicas == AFTERSALES_TRIAGE.partitions
    with pytest.raises(k8s.ManifestError, match="no topic"):
        k8s.consumer_of("aftersales", (), settings)


def test_topics_belong_to_the_strimzi_cluster_of_the_bootstrap_address() -> None:
    assert k8s.strimzi_cluster("huitou-kafka-bootstrap.kafka.svc:9092") == ("huitou", "kafka")
    assert k8s.strimzi_cluster("my-cluster-kafka-bootstrap.streams:9093,other:1") == (
        "my-cluster",
        "streams",
    )
    with pytest.raises(k8s.ManifestError, match="not a Strimzi bootstrap"):
        k8s.strimzi_cluster("broker-0.example.net:9092")


# --- what the kit renders ------------------------------------------------------------


@pytest.mark.parametrize("directory", [K8S_DIR, BASE_DIR], ids=["with-operators", "base"])
def test_every_rendered_resource_is_valid(directory: Path) -> None:
    resources = render(directory)
    assert resources
    found = [p for r in resources for p in problems(r)]
    assert found == []


def test_the_kit_scales_each_service_on_its_consumer_group(kit: list[Resource]) -> None:
    deployments = of_kind(kit, "Deployment")
    scaled_objects = of_kind(kit, "ScaledObject")
    assert set(scaled_objects) == set(SERVICES)
    for service, scaled in scaled_objects.items():
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == service and service in deployments
        # KEDA owns the count: a replicas field left in the Deployment would undo it.
        assert "replicas" not in deployments[service]["spec"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "apache-kafka"
        meta = trigger["metadata"]
        env = environment(kit, deployments[service])
        settings = settings_from(env)
        handlers = importlib.import_module(f"services.{service}.handlers")
        subscribed = [settings.topic(t.name) for t in handlers.SUBSCRIBED_TOPICS]
        partitions = [t.partitions for t in handlers.SUBSCRIBED_TOPICS]
        assert meta["consumerGroup"] == settings.group(service)
        assert meta["topic"].split(",") == subscribed
        # The scaler reads the brokers from the container, as the service does.
        assert meta["bootstrapServersFromEnv"] == "HUITOU_KAFKA_BOOTSTRAP"
        assert env["HUITOU_KAFKA_BOOTSTRAP"]
        assert not {"bootstrapServers", "username", "password", "sasl"} & meta.keys()
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= min(partitions)
        assert int(meta["lagThreshold"]) > 0


def test_without_operators_the_job_creates_topics_and_replicas_are_fixed(
    base: list[Resource],
) -> None:
    assert not of_kind(base, "ScaledObject") and not of_kind(base, "KafkaTopic")
    assert "huitou-topics" in of_kind(base, "Job")
    for deployment in of_kind(base, "Deployment").values():
        assert deployment["spec"]["replicas"] >= 1


def test_with_strimzi_the_registry_declares_every_topic(kit: list[Resource]) -> None:
    assert not of_kind(kit, "Job"), "the topics Job runs beside the Topic Operator"
    base = render(BASE_DIR)
    job_env = environment(base, of_kind(base, "Job")["huitou-topics"])
    replication = int(job_env["HUITOU_KAFKA_REPLICATION_FACTOR"])
    cluster = job_env["HUITOU_KAFKA_BOOTSTRAP"].split("-kafka-bootstrap.")[0]
    topics = {t["spec"]["topicName"]: t for t in of_kind(kit, "KafkaTopic").values()}
    assert set(topics) == {t.name for t in (*ALL_TOPICS, *TOOL_TOPICS)}
    for topic in (*ALL_TOPICS, *TOOL_TOPICS):
        resource = topics[topic.name]
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert resource["spec"]["partitions"] == topic.partitions
        assert resource["spec"]["replicas"] == replication
        assert resource["spec"]["config"] == kafka_config(topic)


@pytest.mark.parametrize("directory", [K8S_DIR, BASE_DIR], ids=["with-operators", "base"])
def test_each_service_has_a_disruption_budget_that_lets_one_go(directory: Path) -> None:
    resources = render(directory)
    budgets = of_kind(resources, "PodDisruptionBudget")
    for name, deployment in of_kind(resources, "Deployment").items():
        budget = budgets[name]["spec"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
        # maxUnavailable never blocks a drain, whatever the replica count.
        assert budget == {**budget, "maxUnavailable": 1} and "minAvailable" not in budget


def test_every_container_requests_what_it_uses(base: list[Resource]) -> None:
    workloads = [*of_kind(base, "Deployment").values(), *of_kind(base, "Job").values()]
    assert workloads
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            requests, limits = resources["requests"], resources["limits"]
            assert quantity(requests["cpu"]) > 0
            assert quantity(limits["memory"]) >= quantity(requests["memory"])
            assert quantity(limits["cpu"]) >= quantity(requests["cpu"])
            if workload["kind"] == "Deployment":
                # The scheduler reserves the measured peak, so a busy node does not evict it.
                assert quantity(requests["memory"]) >= PEAK_RSS_BYTES, container["name"]


# --- the checks catch what is broken -------------------------------------------------


def _scaled_loyalty(kit: list[Resource]) -> Resource:
    return copy.deepcopy(of_kind(kit, "ScaledObject")["loyalty"])


def _first_topic(kit: list[Resource]) -> Resource:
    return copy.deepcopy(next(iter(of_kind(kit, "KafkaTopic").values())))


def _loyalty_deployment(kit: list[Resource]) -> Resource:
    return copy.deepcopy(of_kind(kit, "Deployment")["loyalty"])


def _break_max_replicas(kit: list[Resource]) -> Resource:
    broken = _scaled_loyalty(kit)
    broken["spec"]["maxReplicaCount"] = "6"
    return broken


def _break_scaled_field(kit: list[Resource]) -> Resource:
    broken = _scaled_loyalty(kit)
    broken["spec"]["maxReplicas"] = 6
    return broken


def _break_partitions(kit: list[Resource]) -> Resource:
    broken = _first_topic(kit)
    broken["spec"]["partitions"] = 0
    return broken


def _break_topic_field(kit: list[Resource]) -> Resource:
    broken = _first_topic(kit)
    broken["spec"]["partition"] = 6
    return broken


def _break_topic_metadata(kit: list[Resource]) -> Resource:
    broken = _first_topic(kit)
    broken["metadata"]["label"] = {"a": "b"}
    return broken


def _break_container_field(kit: list[Resource]) -> Resource:
    broken = _loyalty_deployment(kit)
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    return broken


def _break_config_map_metadata(kit: list[Resource]) -> Resource:
    broken = copy.deepcopy(of_kind(kit, "ConfigMap")["huitou-env"])
    broken["metadata"]["HUITOU_ENV"] = "production"
    return broken


def _break_budget(kit: list[Resource]) -> Resource:
    broken = copy.deepcopy(of_kind(kit, "PodDisruptionBudget")["loyalty"])
    broken["spec"]["maxUnavailable"] = [1]
    return broken


@pytest.mark.parametrize(
    ("breaks", "where"),
    [
        (_break_max_replicas, "spec.maxReplicaCount"),
        (_break_scaled_field, "'maxReplicas' was unexpected"),
        (_break_partitions, "spec.partitions"),
        (_break_topic_field, "'partition' was unexpected"),
        (_break_topic_metadata, "'label' was unexpected"),
        (_break_container_field, "'resource' was unexpected"),
        (_break_config_map_metadata, "'HUITOU_ENV' was unexpected"),
        (_break_budget, "spec.maxUnavailable"),
    ],
)
def test_validation_catches_a_broken_resource(kit: list[Resource], breaks: Any, where: str) -> None:
    broken = breaks(kit)
    found = problems(broken)
    assert found, f"{broken['kind']} passed broken"
    assert any(where in p for p in found), found


def test_a_resource_of_no_known_schema_is_a_problem() -> None:
    found = problems({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert found and "Widget" in found[0]


def test_a_missing_listed_file_fails_the_render(tmp_path: Path) -> None:
    kit = copy_kit(tmp_path)
    (kit / "base" / "care.yaml").unlink()
    with pytest.raises(RenderError, match=r"care\.yaml"):
        render(kit)


def test_the_generator_refuses_a_missing_listed_file(tmp_path: Path) -> None:
    kit = copy_kit(tmp_path)
    (kit / "base" / "topics-job.yaml").unlink()
    with pytest.raises(SystemExit, match=r"topics-job\.yaml, which is missing"):
        k8s.main(["check", "--directory", str(kit)])


def test_an_unparsable_listed_file_fails_the_render(tmp_path: Path) -> None:
    kit = copy_kit(tmp_path)
    (kit / "base" / "namespace.yaml").write_text("kind: Namespace\n  metadata: [\n", "utf-8")
    with pytest.raises(RenderError):
        render(kit)


def test_a_broken_listed_file_is_caught_once_rendered(tmp_path: Path) -> None:
    kit = copy_kit(tmp_path)

    def two_as_words(document: dict[str, Any]) -> None:
        if document["kind"] == "Deployment":
            document["spec"]["replicas"] = "two"

    edit_yaml(kit / "base" / "profile.yaml", two_as_words)
    found = [p for r in render(kit / "base") for p in problems(r)]
    assert any(p.startswith("Deployment/profile:") and "spec.replicas" in p for p in found)
