"""/healthz answers without touching anything; /readyz names the component that fails."""

from __future__ import annotations

import time

import httpx
import pytest

from hsm.exceptions import HSMError
from node.observability.health import readiness
from tests.node.conftest import RunningNode


def test_healthz_and_readyz(embedded_node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    rn = embedded_node
    live = httpx.get(f"{rn.url}/healthz")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    ready = httpx.get(f"{rn.url}/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert {"index", "chain", "keystore", "blobs", "worker"} <= set(body["components"])
    # the existing /health stays as it was
    assert httpx.get(f"{rn.url}/health").json() == {"status": "ok"}

    def down() -> list[int]:
        raise HSMError("token removed")

    monkeypatch.setattr(rn.node.keys, "kek_versions", down)
    time.sleep(1.1)  # readiness is computed at most once a second
    ready = httpx.get(f"{rn.url}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready" and body["failed"] == ["keystore"]
    assert body["error"] == "not_ready" and body["request_id"] == ready.headers["x-request-id"]
    assert body["components"]["keystore"] == {"ok": False, "error": "HSMError"}
    assert "token removed" not in ready.text  # the kind only: messages may name hosts
    # liveness does not depend on any component
    assert httpx.get(f"{rn.url}/healthz").status_code == 200


def test_readiness_reports_each_failing_component(
    embedded_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = embedded_node.node
    assert all(c.ok for c in readiness(node).values())

    def boom(*_a: object) -> object:
        raise ConnectionError("down")

    monkeypatch.setattr(node.index, "count_pending_anchors", boom)
    monkeypatch.setattr(node.chain, "head_block", boom)
    checks = readiness(node)
    assert {n for n, c in checks.items() if not c.ok} == {"index", "chain"}
    assert node.lease is not None
    monkeypatch.setattr(type(node.lease), "held", property(lambda _self: False))
    assert not readiness(node)["worker"].ok
