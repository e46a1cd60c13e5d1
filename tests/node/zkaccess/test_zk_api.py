"""The zero-knowledge routes as an API: who may call each, every status documented, the v1
routes gone, and erased or unknown records refused before any proof is looked at."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account

from node.client import ApiError, Scope
from tests.node.conftest import RunningNode
from tests.node.zkaccess.helpers import allow

ZERO_PROOF = {
    "root": "1",
    "current_time": 1,
    "signal": "0x" + "22" * 32,
    "epoch_nullifier": "1",
    "scope_kind": 1,
    "class_hospital": 0,
    "class_roles": 2,
    "proof": ["0"] * 8,
}


def test_openapi_documents_callers_and_statuses(embedded_node: RunningNode) -> None:
    paths = httpx.get(f"{embedded_node.url}/openapi.json", timeout=30).json()["paths"]
    expected = {
        ("/zk", "get", "anyone"): {"200", "404", "503"},
        ("/zk/proving-key", "get", "anyone"): {"200", "404"},
        ("/zk/tree", "get", "anyone"): {"200", "404", "503"},
        ("/zk/credentials", "post", "hospital token"): {
            "201",
            "400",
            "401",
            "403",
            "404",
            "409",
            "422",
            "503",
        },
        ("/zk/credentials/revoke", "post", "hospital token"): {
            "200",
            "401",
            "403",
            "404",
            "422",
            "503",
        },
        ("/zk/credentials/revoke-member", "post", "hospital token"): {
            "200",
            "401",
            "403",
            "404",
            "422",
            "503",
        },
        ("/zk/records/{record_id}/access", "get", "anyone"): {"200", "400", "404", "410", "503"},
        ("/zk/records/{record_id}/read", "post", "anyone"): {
            "200",
            "400",
            "403",
            "404",
            "409",
            "410",
            "422",
            "503",
        },
        ("/zk/accesses", "get", "auditor token"): {"200", "400", "401", "403", "503"},
        ("/zk/accesses/readers", "get", "auditor token"): {
            "200",
            "400",
            "401",
            "403",
            "422",
            "503",
        },
    }
    for (path, method, caller), statuses in expected.items():
        entry = paths[path][method]
        assert statuses <= set(entry["responses"]), (path, method)
        assert f"({caller})" in entry["summary"], (path, entry["summary"])
    # v1 routes are gone: no per-commitment path, no single-member policy switch.
    assert not any(p.startswith("/zk/credentials/{") for p in paths)
    assert "/zk/records/{record_id}/policy" not in paths
    assert "put" not in paths.get("/zk/policies/{category}", {})


def test_unknown_and_erased_records(embedded_node: RunningNode) -> None:
    rn = embedded_node
    with rn.client(rn.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    with rn.client(token) as hospital, rn.client() as public:
        patient = Account.create()
        record = hospital.upload(patient.address, b"x", category="lab")["record_id"]
        allow(hospital, "lab", ["nurse"])
        public.grant_class(patient, ["nurse"], Scope.record(record))
        assert len(public.zk.record_access(record)["classes"]) == 1
        hospital.erase(record, "patient request")
        head = rn.node.chain.head_block()
        for call in (
            lambda: public.zk.record_access(record),
            lambda: public.zk.read(record, ZERO_PROOF),
        ):
            with pytest.raises(ApiError) as err:
                call()
            assert err.value.status == 410
        for bad, status in (("0x" + "00" * 32, 404), ("0x12", 400), ("nope", 400)):
            for call in (
                lambda b=bad: public.zk.record_access(b),
                lambda b=bad: public.zk.read(b, ZERO_PROOF),
            ):
                with pytest.raises(ApiError) as err:
                    call()
                assert err.value.status == status and err.value.detail, bad
        assert rn.node.chain.head_block() == head
