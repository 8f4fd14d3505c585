"""Render deploy/k8s as a user would (kustomize build) and validate what it renders, offline.

kustomize is built once from the Go module proxy into ~/.cache/huitou/bin (about 30 s on
the first run). Custom resources are checked with jsonschema against the openAPIV3Schema
of the CRDs kept in deploy/k8s/crds, closed where the API server's strict field validation
would refuse unknown fields; built-in kinds against Kubernetes' own schemas, which the
kubernetes-validate package ships (strict: unknown fields refused).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from jsonschema import Draft4Validator

REPO = Path(__file__).resolve().parents[2]
K8S_DIR = REPO / "deploy" / "k8s"
CRD_DIR = K8S_DIR / "crds"
CACHE = Path(os.environ.get("HUITOU_CACHE", Path.home() / ".cache" / "huitou"))

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.7.1"
# The oldest Kubernetes the kit is checked against, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())

Resource = dict[str, Any]


class RenderError(RuntimeError):
    """kustomize refused to build a directory."""


def kustomize_binary() -> Path:
    """The pinned kustomize, built from the Go module proxy the first time."""
    binary = CACHE / "bin" / f"kustomize-{KUSTOMIZE_VERSION}"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RenderError("go not found: it builds kustomize for the manifest checks")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        environment = {
            **os.environ,
            "GOBIN": gobin,
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=mod",
            "GOMODCACHE": str(CACHE / "gomod"),
            "GOCACHE": str(CACHE / "gocache"),
        }
        built = subprocess.run(
            [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise RenderError(f"could not build kustomize: {built.stderr.strip()}")
        shutil.move(Path(gobin) / "kustomize", binary)
    return binary


def render(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` renders."""
    built = subprocess.run(
        [str(kustomize_binary()), "build", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise RenderError(built.stderr.strip())
    return [d for d in yaml.safe_load_all(built.stdout) if d is not None]


def strict(schema: Any) -> Any:
    """A CRD schema that refuses the fields it does not declare, as a strict apply does."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        closed["additionalProperties"] = False
    return closed


@cache
def crd_validators(directory: Path = CRD_DIR) -> dict[tuple[str, str], Draft4Validator]:
    """A validator per (apiVersion, kind) served by the CRDs in ``directory``."""
    validators = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text("utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                schema = strict(version["schema"]["openAPIV3Schema"])
                Draft4Validator.check_schema(schema)
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                validators[key] = Draft4Validator(schema)
    return validators


def _where(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top)"


def _builtin_problems(resource: Resource) -> list[str]:
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"Kubernetes {version}: {_where(error.path)}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(error.message)
    return problems


def problems(resource: Resource) -> list[str]:
    """What is wrong with one resource, each naming where; empty when it is valid."""
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    key = (resource.get("apiVersion", ""), resource.get("kind", ""))
    validator = crd_validators().get(key)
    if validator is None:
        found = _builtin_problems(resource)
    else:
        found = [
            f"{_where(e.absolute_path)}: {e.message}"
            for e in sorted(validator.iter_errors(resource), key=lambda e: list(e.path))
        ]
        # A CRD declares metadata as a bare object: the API server checks it as ObjectMeta.
        shell = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": resource.get("metadata")}
        found += [f"metadata of a custom resource: {p}" for p in _builtin_problems(shell)]
    return [f"{name}: {p}" for p in found]
