"""The README's zero-knowledge commands, run as written against an embedded node."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from node.cli.main import app
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
    with embedded_node.client(token) as hospital:
        record = hospital.upload("0x" + "cd" * 20, b"HbA1c 5.4%", category="lab")["record_id"]

    _run("zk", "policy", "set", "lab", "--roles", "physician,nurse", "--url", url, "--token", token)
    cred = tmp_path / "nurse.cred"
    out = _run(
        "zk",
        "credential",
        "new",
        "--hospital",
        embedded_node.node.hospital,
        "--role",
        "nurse",
        "--out",
        str(cred),
    )
    assert oct(cred.stat().st_mode & 0o777) == "0o600"
    commitment = re.search(r"commitment (\d+)", out).group(1)  # type: ignore[union-attr]
    _run("zk", "credential", "register", commitment, "--url", url, "--token", token)
    target = tmp_path / "result.txt"
    out = _run(
        "zk",
        "read",
        record,
        "--credential",
        str(cred),
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
        app, ["zk", "read", record, "--credential", str(tmp_path / "none"), "--url", url]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    result = runner.invoke(
        app, ["zk", "credential", "register", commitment, "--url", url, "--token", token]
    )
    assert result.exit_code == 2 and "already registered" in result.output
