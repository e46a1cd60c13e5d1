"""The Kubernetes manifests (scripts/deploy/kubernetes/) are valid against the Kubernetes
JSON schemas (kubernetes-validate bundles them: no network), probe the right routes and
hold no secret values, only references to the Secret created out of band."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DIR = Path(__file__).resolve().parents[2] / "scripts" / "deploy" / "kubernetes"
SECRET = "emr-node-secrets"
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCS = _documents()


def _kinds(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in DOCS if d["kind"] == kind]


def _deployment(component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in _kinds("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    assert len(DOCS) >= 8
    for name, doc in DOCS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {err.message}")


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = yaml.safe_load((DIR / "api.yaml").read_text().split("---")[0])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = yaml.safe_load((DIR / "api.yaml").read_text().split("---")[0])
    broken["spec"]["replicaCount"] = 2  # not a Deployment field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_api_probes_healthz_and_readyz() -> None:
    (container,) = _deployment("api")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = container["livenessProbe"]["httpGet"]["port"]
    assert port in {p["name"] for p in container["ports"]}


def test_the_routes_the_probes_name_exist() -> None:
    from node.api.routers import ops

    paths = {getattr(r, "path", None) for r in ops.router.routes}
    assert {"/healthz", "/readyz"} <= paths


def test_worker_runs_one_active_and_a_standby_with_a_budget() -> None:
    worker = _deployment("worker")
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    budgets = {d["metadata"]["name"]: d["spec"] for d in _kinds("PodDisruptionBudget")}
    assert budgets["emr-node-worker"]["maxUnavailable"] == 1
    assert budgets["emr-node-api"]["minAvailable"] == 1
    for name, spec in budgets.items():
        component = name.removeprefix("emr-node-")
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == component


def test_pods_run_non_root_read_only_with_resources() -> None:
    for component in ("api", "worker"):
        pod = _deployment(component)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_secrets_are_references_only() -> None:
    assert not _kinds("Secret"), "no Secret (with values) may be committed"
    config = _kinds("ConfigMap")[0]["data"]
    for key in config:  # a secret's file path may be configured, never its value
        if not key.endswith("_FILE"):
            assert not any(w in key for w in ("PIN", "PASSWORD", "PASSPHRASE", "SECRET")), key
    assert config["EMR_HSM__PIN_FILE"].startswith("/run/secrets/")
    referenced: set[str] = set()
    for component in ("api", "worker"):
        pod = _deployment(component)["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for env in container.get("env", []):
                if "value" in env:
                    assert not any(
                        w in env["name"] for w in ("PIN", "PASSWORD", "PASSPHRASE", "SECRET")
                    ), env["name"]
                else:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == SECRET
                    referenced.add(ref["key"])
        secret_volumes = [v["secret"] for v in pod["volumes"] if "secret" in v]
        assert all(v["secretName"] == SECRET for v in secret_volumes)
        referenced |= {i["key"] for v in secret_volumes for i in v.get("items", [])}
    # the HSM PIN (as a file) and the key-store passphrase are both provided by reference
    assert {"hsm-pin", "keystore-passphrase"} <= referenced
