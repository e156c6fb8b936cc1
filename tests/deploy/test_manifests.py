"""Kubernetes (every Kustomize overlay rendered and validated against the Kubernetes schemas),
KServe (validated against the vendored schemas of KServe's CRDs) and compose, without a
cluster or a Docker engine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
KUBERNETES_VERSION = "1.33.0"


def render(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of an overlay, as objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def test_both_overlays_exist() -> None:
    assert OVERLAYS == ["production", "sqlite-trial"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates(overlay: str) -> None:
    objects = render(overlay)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_probes_security_drain_and_scraping(overlay: str) -> None:
    deployment = by_kind(render(overlay))["Deployment"]
    pod = deployment["spec"]["template"]
    container = _container(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "preStop" in container["lifecycle"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts
    config = container["envFrom"][0]["configMapRef"]["name"]
    assert config in {o["metadata"]["name"] for o in render(overlay) if o["kind"] == "ConfigMap"}


def test_production_runs_three_replicas_on_postgresql_with_secrets_as_files() -> None:
    objects = by_kind(render("production"))
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert objects["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert {"PodDisruptionBudget", "NetworkPolicy", "Job", "Service"} <= set(objects)
    env = _env(_container(deployment))
    assert env["MODELSERVE_DATABASE_URL_FILE"].startswith("/run/secrets/modelserve/")
    assert env["MODELSERVE_SECRET_KEY_FILE"].startswith("/run/secrets/modelserve/")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "modelserve-secrets"
    job = objects["Job"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["db", "upgrade"]


def test_sqlite_trial_is_one_replica_on_a_persistent_volume() -> None:
    objects = by_kind(render("sqlite-trial"))
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == claim
    assert "secrets" not in volumes
    assert not {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} & set(objects)
    assert "MODELSERVE_DATABASE_URL_FILE" not in _env(_container(deployment))


def _strict(schema: Any) -> Any:
    """The schema refusing unknown fields where it lists the known ones (the API server prunes
    them silently; a typo should fail here)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _validate_kserve(manifest: str, schema_file: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((KSERVE / manifest).read_text())
    vendored = json.loads((KSERVE / "crd" / schema_file).read_text())
    assert obj["apiVersion"] == vendored["apiVersion"]
    assert obj["kind"] == vendored["kind"]
    schema = _strict(vendored["schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)
    return obj


def test_cluster_serving_runtime_validates_and_speaks_v2_on_8080() -> None:
    runtime = _validate_kserve("cluster-serving-runtime.yaml", "clusterservingruntime.schema.json")
    spec = runtime["spec"]
    assert "v2" in spec["protocolVersions"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert "--http_port=8080" in container["args"]
    assert "--model_dir=/mnt/models" in container["args"]
    assert {f["name"] for f in spec["supportedModelFormats"]} == {"sklearn"}


def test_inference_service_validates_and_uses_the_runtime() -> None:
    service = _validate_kserve("inference-service.yaml", "inferenceservice.schema.json")
    model = service["spec"]["predictor"]["model"]
    runtime = yaml.safe_load((KSERVE / "cluster-serving-runtime.yaml").read_text())
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2"


def test_the_strict_check_catches_a_misspelt_field() -> None:
    vendored = json.loads((KSERVE / "crd" / "inferenceservice.schema.json").read_text())
    bad = yaml.safe_load((KSERVE / "inference-service.yaml").read_text())
    bad["spec"]["predictor"]["model"]["storageURI"] = bad["spec"]["predictor"]["model"].pop(
        "storageUri"
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _strict(vendored["schema"]))


def test_compose_runs_migrations_once_then_modelserve_on_healthy_postgres() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    postgres, migrate, server = services["postgres"], services["migrate"], services["modelserve"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.split(":")[0] in compose["volumes"] for v in postgres["volumes"])
    assert migrate["command"] == ["db", "upgrade"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert server["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for service in (migrate, server):
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        env = service["environment"]
        assert env["MODELSERVE_DATABASE_URL_FILE"].startswith("/run/secrets/")
        assert env["MODELSERVE_SECRET_KEY_FILE"].startswith("/run/secrets/")
        assert set(service["secrets"]) <= set(compose["secrets"])
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # made by the documented command
    assert "modelserve demo --no-serve" in (ROOT / "compose.yaml").read_text()
