"""Schemathesis against the node's own OpenAPI document, over real HTTP, as each kind of caller
(an admin, a hospital and an auditor token, and a patient's wallet session): every phase
(examples, coverage, fuzzing, stateful) and every check. The node must answer no 5xx, only
documented statuses, bodies and headers that match the document, accept every request the
document calls valid and refuse every one it calls invalid.

Bounded for CI: a few examples per operation and phase, a fixed seed (printed, and set with
EMR_SCHEMATHESIS_SEED to reproduce or explore), one worker. The schemathesis report of a
failing run is in the assertion message, with a curl line per failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from node.api.openapi import ERROR_SCHEMA_NAME
from tests.node.conftest import RunningNode, start_node
from tests.node.production import ProductionServices

ROOT = Path(__file__).resolve().parents[3]
SEED = int(os.environ.get("EMR_SCHEMATHESIS_SEED", "20261210"))
# Random examples per operation (fuzzing phase; the examples phase sends the document's
# own). Four are enough in CI: the coverage phase already sends every operation its
# deterministic boundary and negative cases (~3,000 a run, ~90 % of all cases, unbounded by
# this number), and with a fixed seed the random ones are the same on every run anyway.
# 8 -> 4 halves the fuzzing phase (admin: 37-42 s -> 21-26 s). Explore with
# EMR_SCHEMATHESIS_EXAMPLES=50 and other seeds.
MAX_EXAMPLES = int(os.environ.get("EMR_SCHEMATHESIS_EXAMPLES", "4"))
STATEFUL_STEPS = 8
STATEFUL_SCENARIOS = 25

# Statuses a schema-valid request may still get: the document cannot carry every fact that
# decides them. 410: the record was erased (its id stays valid).
ACCEPTED = ["2xx", "401", "403", "404", "409", "410", "429"]

# Operations whose 400 depends on state or secrets no schema can express, with the reason.
# Everything else answers a schema-valid request with 2xx or one of ACCEPTED.
REFUSALS_BY_STATE: dict[str, str] = {
    # The signer must be the patient, the deadline and expiry in the future, the domain this
    # chain's, the reader class known: a random well-formed body is a forged consent.
    "^/consents/(grant|revoke|class-grants|class-revokes)$": "signature, deadline, expiry",
    # Policy knobs (break_glass.max_duration, ...) and a non-blank reason.
    "^/break-glass$": "break-glass policy of this deployment",
    # Distinct guardians other than the owner, threshold within them, delay at least
    # wallets.min_recovery_delay; a guardian's or owner's signature before its deadline.
    "^/wallets$": "guardians, threshold and the node's minimum recovery delay",
    "^/wallets/[^/]+/recovery/(approvals|cancel)$": "signature, deadline, new owner",
    # previous_id must name a record of the same patient.
    "^/records$": "previous_id names an existing record of this patient",
    # The clinician's directory entry decides the credential's role and licence.
    "^/zk/credentials$": "clinician directory",
    # from after to.
    "^/zk/accesses/readers$": "an empty time range",
    # A proof that verifies for this record, root and time.
    "^/zk/records/[^/]+/read$": "the proof and its time window",
}

# Operations whose 422 depends on a relation between the parts of one request that no schema
# can express, with the reason. Schema-invalid requests are still checked for refusal.
REFUSALS_BY_RELATION: dict[str, str] = {
    "^/records/batch$": "each manifest entry names one file part of the same request",
}

# FHIR resources are validated by fhir.resources against the FHIR R4 specification, which the
# OpenAPI document names (a FHIR resource object) but does not restate; a FHIR search needs
# one of several parameters. A random JSON object is refused with an OperationOutcome: 400
# (not a resource of this type, a search without its parameter) or 422 (a resource that
# breaks the node's rules: a Consent that disagrees with its signature).
REFUSALS_BY_STANDARD: dict[str, str] = {
    "^/fhir/?$": "a transaction or batch Bundle (FHIR R4)",
    "^/fhir/(DocumentReference|Binary|Consent)$": "a FHIR R4 resource of this type",
    "^/fhir/Consent/[^/]+$": "a FHIR R4 Consent with its signed Revoke",
    "^/fhir/(Patient|Provenance)$": "a search needs identifier / _id, or target",
    "^/dicomweb/studies$": "multipart/related of DICOM Part 10 instances (DICOMweb STOW-RS)",
}

# Paths that are also a value of a templated sibling path, with the checks of undocumented
# methods that cannot hold there: GET /records/batch is GET /records/{record_id} with an id
# that is not one (400), and Allow lists the methods of both routes.
SHADOWED_PATHS: dict[str, list[str]] = {
    "^/records/batch$": ["unsupported_method", "allow_header_conformance"],
}


def _config(token: str, role: str, examples: int) -> str:
    lines = [
        f"seed = {SEED}",
        "continue-on-failure = true",
        "workers = 1",
        'hooks = "tests.node.api.schemathesis_hooks"',
        "[generation]",
        f"max-examples = {examples}",
        "[phases.stateful]",
        f"max-steps = {STATEFUL_STEPS}",
        "[phases.stateful.generation]",
        f"max-examples = {STATEFUL_SCENARIOS}",
        # Every check, as `--checks all` would, but in the file: a check named on the command
        # line could not be turned off for one operation below.
        "[checks]",
        "enabled = true",
        "[checks.positive_data_acceptance]",
        f"expected-statuses = {json.dumps(ACCEPTED)}",
        "[auth.openapi.HTTPBearer]",
        f"bearer = {json.dumps(token)}",
    ]
    for pattern in REFUSALS_BY_STATE:
        lines += [
            "[[operations]]",
            f"include-path-regex = {json.dumps(pattern)}",
            "[operations.checks.positive_data_acceptance]",
            f"expected-statuses = {json.dumps([*ACCEPTED, '400'])}",
        ]
    for pattern in REFUSALS_BY_STANDARD:
        lines += [
            "[[operations]]",
            f"include-path-regex = {json.dumps(pattern)}",
            "[operations.checks.positive_data_acceptance]",
            f"expected-statuses = {json.dumps([*ACCEPTED, '400', '422'])}",
        ]
    for pattern in REFUSALS_BY_RELATION:
        lines += [
            "[[operations]]",
            f"include-path-regex = {json.dumps(pattern)}",
            "[operations.checks.positive_data_acceptance]",
            f"expected-statuses = {json.dumps([*ACCEPTED, '422'])}",
        ]
    for pattern, checks in SHADOWED_PATHS.items():
        lines += ["[[operations]]", f"include-path-regex = {json.dumps(pattern)}"]
        for check in checks:
            lines += [f"[operations.checks.{check}]", "enabled = false"]
    if role == "wallet":
        # Ending the session would leave the rest of the run without a caller.
        lines += ["[[operations]]", 'include-path = "/auth/logout"', "enabled = false"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    rn = start_node(tmp_path_factory.mktemp("schemathesis") / "node")
    try:
        yield rn
    finally:
        rn.stop()


def _callers(node: RunningNode) -> dict[str, str]:
    """One caller per role. The node's own admin token stays out of the runs (an admin run may
    revoke tokens it lists)."""
    with node.client(node.admin_token) as admin:
        made = {
            role: admin.create_token(f"schemathesis-{role}", role)
            for role in ("hospital", "auditor", "admin")
        }
        patient = Account.create()
        with node.client() as anyone:
            made["wallet"] = anyone.login(patient)
        # Something to find: a record of the signed-in patient, and a clinician.
        with node.client(made["hospital"]) as hospital:
            hospital.upload(patient.address, b"hello", category="lab")
            hospital.add_clinician(Account.create().address, "physician", 2**31)
    return made


@pytest.fixture(scope="module")
def tokens(node: RunningNode) -> dict[str, str]:
    return _callers(node)


def test_document_is_precise(node: RunningNode) -> None:
    """Every operation documents its error statuses with the one error body, and no integer
    bound lost its value on the way (FastAPI types bounds as floats)."""
    doc = httpx.get(f"{node.url}/openapi.json").json()
    assert set(doc["components"]["schemas"][ERROR_SCHEMA_NAME]["properties"]) == {
        "error",
        "detail",
        "request_id",  # issue 14: also in the X-Request-ID header
    }
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            codes = {int(c) for c in operation["responses"]}
            assert {400, 429, 503} <= codes, (method, path)
            if operation.get("security"):
                assert {401, 403} <= codes, (method, path)
            for code, response in operation["responses"].items():
                if int(code) >= 400 and path.startswith("/fhir"):  # issue 12: FHIR errors
                    schema = response["content"]["application/fhir+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/OperationOutcome"}
                elif int(code) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}

    def bounds(value: object) -> Iterator[object]:
        if isinstance(value, dict):
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if key in value:
                    yield value[key]
            for v in value.values():
                yield from bounds(v)
        elif isinstance(value, list):
            for v in value:
                yield from bounds(v)

    for bound in bounds(doc):
        assert isinstance(bound, int), bound
    # Integers in paths and queries reach SQL (signed 64-bit): each has an upper bound.
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                if schema.get("type") == "integer":
                    assert {"maximum", "exclusiveMaximum"} & set(schema), (method, path, parameter)


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("auditor", "/audit/keys?after=9223372036854775808"),
        ("auditor", "/audit/events?since=9223372036854775808&source=mirror"),
        ("auditor", "/audit/events?until=9223372036854775808&source=mirror"),
        ("hospital", "/records?offset=9223372036854775808"),
        ("hospital", "/consents/relays/9223372036854775808"),
    ],
)
def test_integers_past_64_bits_are_refused(
    role: str, path: str, node: RunningNode, tokens: dict[str, str]
) -> None:
    """Found by schemathesis: these overflowed SQLite's integers into a 500."""
    r = httpx.get(node.url + path, headers={"Authorization": f"Bearer {tokens[role]}"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_failed" and "less than or equal" in r.json()["detail"]


def _schemathesis(role: str, url: str, token: str, tmp_path: Path, examples: int) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(token, role, examples))
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--no-color",
    ]
    print(f"schemathesis as {role}: seed {SEED}, {examples} examples per operation and phase")
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    report = run.stdout + run.stderr
    print(report[-2500:])
    print(f"schemathesis as {role}: exit {run.returncode} in {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, f"schemathesis as {role} (seed {SEED}):\n{report[-30000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("role", ["hospital", "auditor", "wallet", "admin"])
def test_schemathesis(role: str, node: RunningNode, tokens: dict[str, str], tmp_path: Path) -> None:
    _schemathesis(role, node.url, tokens[role], tmp_path, MAX_EXAMPLES)


@pytest.fixture(scope="module")
def production_node(
    production_services: ProductionServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    data_dir = tmp_path_factory.mktemp("schemathesis-production") / "node"
    rn = start_node(data_dir, production_services.settings(data_dir))
    try:
        yield rn
    finally:
        rn.stop()


@pytest.mark.integration
def test_schemathesis_production(production_node: RunningNode, tmp_path: Path) -> None:
    """The same on the production backends (MySQL, Redis, IPFS, hardhat, throttling on), as
    an admin (whose token passes every role check), with fewer examples."""
    token = _callers(production_node)["admin"]
    _schemathesis("admin", production_node.url, token, tmp_path, max(2, MAX_EXAMPLES // 2))
