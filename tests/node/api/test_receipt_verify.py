"""POST /audit/receipts/verify: an anchoring receipt checked from the chain alone, so that any
member's node can verify a receipt another hospital's node issued (issue 14). Here one
embedded node issues the receipts and checks them; tests/consortium/test_cross_hospital.py
checks one of hospital A's receipts at hospital C."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from node.client import EmrClient
from tests.node.conftest import RunningNode, start_node
from tests.node.security.helpers import Callers, make_callers

CHECKS = {
    "root_on_chain",
    "proof_reaches_root",
    "anchored_in_batch",
    "tx_hash_matches",
    "leaf_matches_record",
    "proof_valid_on_chain",
}


@dataclass
class Setup:
    rn: RunningNode
    callers: Callers
    hospital: EmrClient
    auditor: EmrClient
    patient: str
    first: dict[str, Any]  # the receipt of a first version
    second: dict[str, Any]  # the receipt of its next version (previous_id: the first)


def _wait_anchored(client: EmrClient, record_id: str) -> dict[str, Any]:
    receipt = client.wait_anchored(record_id, timeout=60)
    # The worker anchors in the background: the RecordAnchored log is in the same block.
    assert receipt["status"] == "anchored" and receipt["tx_hash"], receipt
    return receipt


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    rn = start_node(Path(tmp_path_factory.mktemp("receipts")) / "node")
    try:
        callers = make_callers(rn)
        hospital, auditor = rn.client(callers.hospital), rn.client(callers.auditor)
        patient = Account.create().address
        first = hospital.upload(patient, b"first version", category="lab")["record_id"]
        r1 = _wait_anchored(hospital, first)
        second = hospital.upload(patient, b"second version", category="lab", previous_id=first)
        r2 = _wait_anchored(hospital, second["record_id"])
        yield Setup(rn, callers, hospital, auditor, patient, r1, r2)
        hospital.close()
        auditor.close()
    finally:
        rn.stop()


def _flip(hex32: str) -> str:
    """The same 32 bytes with the last one changed."""
    last = int(hex32[-2:], 16) ^ 0x01
    return hex32[:-2] + f"{last:02x}"


def test_a_receipt_as_the_node_gives_it_verifies(setup: Setup) -> None:
    receipt = setup.second
    # The receipt carries the leaf's preimage: patient, content hash, predecessor.
    assert receipt["patient"] == setup.patient
    assert receipt["previous_id"] == setup.first["record_id"]
    assert receipt["content_hash"].startswith("0x") and len(receipt["content_hash"]) == 66
    info = setup.hospital.info()
    for caller in (setup.auditor, setup.hospital, setup.rn.client(setup.rn.admin_token)):
        v = caller.verify_receipt(receipt)  # posted as is: status etc. are ignored
        assert v["valid"] is True and v["failed"] == [], v
        assert set(v["checks"]) == CHECKS and all(v["checks"].values()), v
        assert v["record_id"] == receipt["record_id"] and v["batch_id"] == receipt["batch_id"]
        assert v["patient"] == setup.patient
        assert v["hospital"] == info["hospital"]
        assert v["hospital_name"] in {m["name"] for m in info["members"]}
        assert v["hospital_member_id"] >= 1
        assert v["anchor_tx"] == receipt["tx_hash"]
        assert v["block_number"] == receipt["block_number"]
        assert v["anchored_at"] == receipt["anchored_at"]
        assert v["erased"] is False
    # A first version (no predecessor) too; without a tx hash that check is not made.
    first = {k: v for k, v in setup.first.items() if k != "tx_hash"}
    v = setup.auditor.verify_receipt(first)
    assert v["valid"] is True and v["checks"]["tx_hash_matches"] is None, v


def _tampered(setup: Setup) -> dict[str, tuple[Callable[[dict[str, Any]], None], set[str]]]:
    other = setup.first
    assert other["batch_id"] != setup.second["batch_id"]  # anchored one after the other

    def put(**fields: Any) -> Callable[[dict[str, Any]], None]:
        return lambda r: r.update({k: f(r) if callable(f) else f for k, f in fields.items()})

    return {
        "leaf": (
            put(leaf=lambda r: _flip(r["leaf"])),
            {"proof_reaches_root", "leaf_matches_record"},
        ),
        "proof": (
            put(proof=lambda r: [*r["proof"], "0x" + "ab" * 32]),
            {"proof_reaches_root", "proof_valid_on_chain"},
        ),
        "root": (put(root=lambda r: _flip(r["root"])), {"root_on_chain", "proof_reaches_root"}),
        "batch (none such)": (
            put(batch_id=lambda r: r["batch_id"] + 1000),
            {"root_on_chain", "anchored_in_batch", "tx_hash_matches", "proof_valid_on_chain"},
        ),
        "batch (another record's)": (
            put(batch_id=other["batch_id"]),
            {"root_on_chain", "anchored_in_batch", "tx_hash_matches", "proof_valid_on_chain"},
        ),
        "content hash": (
            put(content_hash=lambda r: _flip(r["content_hash"])),
            {"leaf_matches_record", "proof_valid_on_chain"},
        ),
        "predecessor": (
            put(previous_id=None),
            {"leaf_matches_record", "proof_valid_on_chain"},
        ),
        "tx hash": (put(tx_hash=lambda r: _flip(r["tx_hash"])), {"tx_hash_matches"}),
        # Another record's id on this receipt: the leaf, root and proof agree with each
        # other and with the chain, but that record was anchored elsewhere, as another leaf.
        "record id": (
            put(record_id=other["record_id"]),
            {"anchored_in_batch", "tx_hash_matches", "leaf_matches_record", "proof_valid_on_chain"},
        ),
        # A record id the chain never saw: no event, so no patient to hash the leaf with.
        "unknown record id": (
            put(record_id="0x" + "00" * 3 + "01" + "ee" * 28),
            {"anchored_in_batch", "tx_hash_matches", "leaf_matches_record", "proof_valid_on_chain"},
        ),
    }


TAMPERED = [
    "leaf",
    "proof",
    "root",
    "batch (none such)",
    "batch (another record's)",
    "content hash",
    "predecessor",
    "tx hash",
    "record id",
    "unknown record id",
]


@pytest.mark.parametrize("field", TAMPERED)
def test_a_tampered_receipt_does_not_verify_and_names_the_check(setup: Setup, field: str) -> None:
    change, failing = _tampered(setup)[field]
    receipt = dict(setup.second)
    change(receipt)
    assert receipt != setup.second
    v = setup.auditor.verify_receipt(receipt)
    assert v["valid"] is False, v
    assert set(v["failed"]) == failing, v
    assert {name for name, ok in v["checks"].items() if ok is False} == failing, v
    assert v["erased"] is False
    if field == "unknown record id":
        assert v["patient"] is None and v["anchor_tx"] is None, v


MALFORMED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "pending receipt": lambda r: {"record_id": r["record_id"], "status": "pending"},
    "no content hash": lambda r: {k: v for k, v in r.items() if k != "content_hash"},
    "short record id": lambda r: {**r, "record_id": r["record_id"][:-2]},
    "record id without 0x": lambda r: {**r, "record_id": r["record_id"][2:] + "00"},
    "proof hash not hex": lambda r: {**r, "proof": ["0x" + "zz" * 32]},
    "proof not a list": lambda r: {**r, "proof": r["leaf"]},
    "33 proof hashes": lambda r: {**r, "proof": ["0x" + "11" * 32] * 33},
    "negative batch": lambda r: {**r, "batch_id": -1},
    "batch past 2^63": lambda r: {**r, "batch_id": 2**63},
    "batch as text": lambda r: {**r, "batch_id": "one"},
    "batch as a boolean": lambda r: {**r, "batch_id": False},
    "batch as numeric text": lambda r: {**r, "batch_id": str(r["batch_id"])},
    "null root": lambda r: {**r, "root": None},
    "a list": lambda r: [r],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_receipts_are_422(setup: Setup, case: str) -> None:
    body = MALFORMED[case](setup.second)
    r = httpx.post(
        setup.rn.url + "/audit/receipts/verify",
        json=body,
        headers=setup.callers.headers("auditor"),
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] and r.json()["detail"]


def test_only_api_tokens_may_verify(setup: Setup) -> None:
    url = setup.rn.url + "/audit/receipts/verify"
    for who, expected in (("wallet", 403), ("anonymous", 401), ("bogus", 401)):
        r = httpx.post(url, json=setup.second, headers=setup.callers.headers(who))
        assert r.status_code == expected, (who, r.text)
        assert r.json()["error"] in ("forbidden", "unauthenticated"), r.text
    # Auditor, hospital and admin tokens: the first test.


def test_an_erased_record_still_verifies_and_says_erased(setup: Setup) -> None:
    patient = Account.create().address
    rid = setup.hospital.upload(patient, b"to be erased", category="lab")["record_id"]
    receipt = _wait_anchored(setup.hospital, rid)
    assert setup.auditor.verify_receipt(receipt)["erased"] is False
    setup.hospital.erase(rid, "patient asked (GDPR art. 17)")
    deadline = time.monotonic() + 60
    while not (v := setup.auditor.verify_receipt(receipt))["erased"]:
        assert time.monotonic() < deadline, "no RecordErased tombstone after 60 s"
        time.sleep(0.2)
    # The anchor still proves what the record was; the tombstone is reported beside it.
    assert v["valid"] is True and v["failed"] == [], v


def test_cli_verify_receipt(setup: Setup, tmp_path: Path) -> None:
    """`emr-node audit verify-receipt FILE`: exit 0 valid, 1 invalid, 2 not a receipt."""
    import json

    from typer.testing import CliRunner

    from node.cli.main import app

    runner = CliRunner()
    args = ["--url", setup.rn.url, "--token", setup.callers.auditor]
    good, bad, broken = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "broken.json"
    good.write_text(json.dumps(setup.second))
    bad.write_text(json.dumps({**setup.second, "root": _flip(setup.second["root"])}))
    broken.write_text("{not json")
    ok = runner.invoke(app, ["audit", "verify-receipt", str(good), *args])
    assert ok.exit_code == 0 and json.loads(ok.output)["valid"] is True, ok.output
    no = runner.invoke(app, ["audit", "verify-receipt", str(bad), *args])
    assert no.exit_code == 1 and "root_on_chain" in json.loads(no.output)["failed"], no.output
    assert runner.invoke(app, ["audit", "verify-receipt", str(broken), *args]).exit_code == 2
    pending = tmp_path / "pending.json"
    pending.write_text(json.dumps({"record_id": setup.second["record_id"], "status": "pending"}))
    refused = runner.invoke(app, ["audit", "verify-receipt", str(pending), *args])
    assert refused.exit_code == 2 and "422" in refused.output, refused.output
