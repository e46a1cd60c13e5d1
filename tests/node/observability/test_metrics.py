"""/metrics on a node with traffic: parsed with prometheus_client's parser, every series
the alert rules and the dashboard use is exported, labels carry route templates only."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from eth_account import Account
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from node.api.app import create_app
from node.client import ApiError, EmrClient, Scope
from node.observability.metrics import (
    CATALOGUE,
    NULL_METRICS,
    STATE_SERIES,
    MetricsExporterAPI,
    exported_names,
)
from node.settings import MetricsSettings
from tests.node.conftest import RunningNode
from tests.node.fhir.test_consent import FHIR_JSON, consent_resource, hexid

DEPLOY = Path(__file__).resolve().parents[3] / "scripts" / "deploy"
PROMQL_NAME = re.compile(r"\b(emr_[a-z0-9_]+)\b")


def _scrape(rn: RunningNode, token: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = httpx.get(f"{rn.url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _traffic(rn: RunningNode, hospital: EmrClient, public: EmrClient) -> str:
    patient, ada, bob = Account.create(), Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"na 140", category="lab")["record_id"]
    hospital.wait_anchored(rid, timeout=30)
    public.grant(patient, ada.address, Scope.record(rid))
    assert public.read(rid, public.login(ada)).content == b"na 140"
    with pytest.raises(ApiError):
        public.read(rid, public.login(bob))
    # the FHIR façade's Consent counts as /consents/grant does
    signed = public.sign_consent(patient, "Grant", Account.create().address, Scope.record(rid))
    fhir = httpx.post(
        f"{rn.url}/fhir/Consent",
        content=json.dumps(consent_resource(signed, record=hexid(rid))),
        headers={"Content-Type": FHIR_JSON},
        timeout=60,
    )
    assert fhir.status_code == 201, fhir.text
    chief = Account.create().address
    hospital.add_clinician(bob.address, "physician")
    hospital.add_clinician(chief, "emergency")
    hospital.break_glass(patient.address, bob.address, "ER", approved_by=chief, duration=600)
    httpx.get(f"{rn.url}/records/0x{'ab' * 32}")  # an id in the path: 401, never a label
    rn.node.access_flusher.flush_now()
    return rid


def test_metrics_scrape_after_traffic(
    running_node: RunningNode, hospital: EmrClient, auditor: EmrClient, public: EmrClient
) -> None:
    """On the embedded default, and on the production backends (IPFS, MySQL, Redis,
    hardhat) where the IPFS replication and cache series appear too."""
    rn = running_node
    rid = _traffic(rn, hospital, public)
    auditor_token = auditor.token
    samples = _scrape(rn, auditor_token)

    # HTTP series per route template, never a raw path
    routes = {labels["route"] for labels, _ in samples["emr_http_requests_total"]}
    assert "/records/{record_id}" in routes and "/records" in routes
    assert not any(rid[2:] in r or "ab" * 32 in r for r in routes)
    assert "emr_http_request_duration_seconds_bucket" in samples
    # flows, workers, HSM, cache
    assert sum(v for _, v in samples["emr_records_uploaded_total"]) >= 1
    reads = {labels["outcome"]: v for labels, v in samples["emr_record_reads_total"]}
    assert reads["granted"] >= 1 and reads["denied"] >= 1
    consents = {(lb["action"], lb["result"]): v for lb, v in samples["emr_consents_total"]}
    assert consents[("consent_grant", "relayed")] == 2  # /consents/grant and /fhir/Consent
    bg = samples["emr_break_glass_total"]
    assert bg[0][0]["hospital"] == rn.node.hospital and bg[0][1] == 1
    workers = {lb["worker"] for lb, _ in samples["emr_worker_rounds_total"]}
    assert "anchorer" in workers or any("anchor" in w for w in workers)
    ops = {lb["operation"] for lb, _ in samples["emr_hsm_operation_duration_seconds_count"]}
    assert {"wrap_many", "sign"} <= ops or {"wrap", "sign"} <= ops
    assert "emr_cache_requests_total" in samples
    # state at scrape time
    queues = {lb["queue"]: v for lb, v in samples["emr_queue_depth"]}
    assert set(queues) == {"anchors", "access_log", "consent_relays", "erasures"}
    assert queues["anchors"] == 0 and queues["access_log"] == 0
    assert samples["emr_anchor_lag_seconds"][0][1] == 0
    assert samples["emr_chain_head_block"][0][1] >= 1
    up = {lb["component"]: v for lb, v in samples["emr_component_up"]}
    assert up["index"] == up["chain"] == up["keystore"] == 1
    # every series name exported is declared, and declared ones are exported
    declared = exported_names()
    assert set(samples) - declared == set()
    for name in STATE_SERIES:
        assert name in samples or name.startswith("emr_ipfs"), name
    if rn.node.settings.storage.blob_backend == "ipfs":
        reachable = samples["emr_ipfs_nodes_reachable"][0][1]
        assert reachable >= samples["emr_ipfs_replication_min"][0][1] >= 1
        assert up["blobs"] == 1
    if rn.node.settings.storage.cache_backend == "redis":
        assert up["cache"] == 1


def test_metrics_access(embedded_node: RunningNode) -> None:
    rn = embedded_node
    with rn.client(rn.admin_token) as admin:
        hospital_token = admin.create_token("ehr", "hospital")
    assert httpx.get(f"{rn.url}/metrics").status_code == 401
    bad = httpx.get(f"{rn.url}/metrics", headers={"Authorization": "Bearer emr_nope"})
    assert bad.status_code == 401
    r = httpx.get(f"{rn.url}/metrics", headers={"Authorization": f"Bearer {hospital_token}"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert _scrape(rn, rn.admin_token)


def test_metrics_404_when_disabled_or_not_exportable(embedded_node: RunningNode) -> None:
    """metrics.enabled off, or a node whose metrics cannot be scraped (NullMetrics): 404
    with the reason, for an admin too; the running node's metrics are exportable."""
    node = embedded_node.node
    assert isinstance(node.metrics, MetricsExporterAPI)
    admin = {"Authorization": f"Bearer {embedded_node.admin_token}"}
    off = node.settings.model_copy(update={"metrics": MetricsSettings(enabled=False)})
    cases = {
        "metrics are disabled": dataclasses.replace(node, settings=off),
        "records no metrics": dataclasses.replace(node, metrics=NULL_METRICS),
    }
    for reason, variant in cases.items():
        # no lifespan: the embedded node's own app runs its workers
        app = create_app(variant, stop_on_shutdown=False)
        answer = TestClient(app, base_url=embedded_node.url).get("/metrics", headers=admin)
        assert answer.status_code == 404, answer.text
        assert reason in answer.json()["detail"]


def _alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_and_dashboard_use_exported_metrics() -> None:
    declared = exported_names()
    names: set[str] = set()
    rules = _alert_rules()
    wanted = {
        "EmrAnchorLagHigh",
        "EmrIpfsReplicationBelowMinimum",
        "EmrQueueGrowing",
        "EmrHighErrorRate",
        "EmrHsmDown",
        "EmrBreakGlassSpike",
    }
    assert wanted <= {str(r["alert"]) for r in rules}
    for rule in rules:
        names |= set(PROMQL_NAME.findall(str(rule["expr"])))
    dashboard = json.loads((DEPLOY / "grafana" / "emr-node-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        names |= set(PROMQL_NAME.findall(expr))
    assert names, "no emr_ series referenced"
    assert names - declared == set(), names - declared
    # the catalogue follows the conventions
    for name, spec in CATALOGUE.items():
        assert name.startswith("emr_")
        assert name.endswith("_total") == (spec.kind == "counter")
        if spec.kind == "histogram":
            assert name.endswith("_seconds")
        assert not {"path", "record_id", "patient", "token"} & set(spec.labels)
