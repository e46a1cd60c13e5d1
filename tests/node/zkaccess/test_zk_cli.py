"""The README's zero-knowledge commands, run as written against an embedded node: the
clinician creates an identity, the hospital issues a credential from its directory, the
clinician accepts it and reads anonymously under the patient's class consent."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from eth_account import Account
from typer.testing import CliRunner

from node.cli.main import app
from node.client import Scope
from tests.node.conftest import RunningNode

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_readme_zk_commands(embedded_node: RunningNode, tmp_path: Path) -> None:
    url = embedded_node.url
    with embedded_node.client(embedded_node.admin_token) as admin:
        token = admin.create_token("ehr", "hospital")
    patient = Account.create()
    nurse_address = Account.create().address
    with embedded_node.client(token) as hospital:
        record = hospital.upload(patient.address, b"HbA1c 5.4%", category="lab")["record_id"]
        hospital.add_clinician(nurse_address, "nurse", licence_expiry=int(time.time()) + 86400)
        hospital.grant_class(patient, ["nurse"], Scope.category("lab"))

    _run(
        "zk",
        "policy",
        "propose",
        "lab",
        "--roles",
        "physician,nurse",
        "--url",
        url,
        "--token",
        token,
    )
    identity = tmp_path / "nurse.identity"
    out = _run("zk", "identity", "new", "--out", str(identity))
    assert oct(identity.stat().st_mode & 0o777) == "0o600"
    commitment = re.search(r"identity commitment (\d+)", out).group(1)  # type: ignore[union-attr]
    receipt = tmp_path / "receipt.json"
    _run(
        "zk",
        "credential",
        "issue",
        commitment,
        "--clinician",
        nurse_address,
        "--out",
        str(receipt),
        "--url",
        url,
        "--token",
        token,
    )
    issued = json.loads(receipt.read_text())["credentials"][0]
    assert issued["role"] == "nurse"
    out = _run("zk", "identity", "accept", str(identity), "--receipt", str(receipt))
    assert f"credential leaf {issued['leaf']}" in out
    target = tmp_path / "result.txt"
    out = _run(
        "zk",
        "read",
        record,
        "--identity",
        str(identity),
        "--out",
        str(target),
        "--url",
        url,
        "--keys-dir",
        str(tmp_path / "client-keys"),
    )
    assert target.read_bytes() == b"HbA1c 5.4%"
    assert "access recorded in tx 0x" in out

    # Errors are one line, no stack trace.
    result = runner.invoke(
        app, ["zk", "read", record, "--identity", str(tmp_path / "none"), "--url", url]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    result = runner.invoke(
        app,
        [
            "zk",
            "credential",
            "issue",
            commitment,
            "--clinician",
            nurse_address,
            "--url",
            url,
            "--token",
            token,
        ],
    )
    assert result.exit_code == 2 and "already issued" in result.output
    fresh = tmp_path / "fresh.identity"
    _run("zk", "identity", "new", "--out", str(fresh))
    result = runner.invoke(app, ["zk", "read", record, "--identity", str(fresh), "--url", url])
    assert result.exit_code == 2 and "no credential has been issued" in result.output

    # Revocation by leaf; the reader is then refused.
    _run("zk", "credential", "revoke", issued["leaf"], "--url", url, "--token", token)
    result = runner.invoke(
        app,
        [
            "zk",
            "read",
            record,
            "--identity",
            str(identity),
            "--url",
            url,
            "--keys-dir",
            str(tmp_path / "client-keys"),
        ],
    )
    assert result.exit_code == 2 and "not in the consortium tree" in result.output
