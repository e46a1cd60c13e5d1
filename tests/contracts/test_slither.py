"""Slither on the contracts: every finding is triaged in contracts/slither.triage.json.

scripts/slither.sh compiles with Hardhat (the npm solc, offline) and runs Slither on that
build; this test fails on a finding no triage entry covers (fix it, or triage it with a
reason in the file and in docs/security.md), and on an entry that no longer matches any
finding (the triage must not outlive the code it talks about).

Slow (minutes: Slither analyses every compilation unit) and, the first time, it installs
slither-analyzer from PyPI into .tools/slither-venv: marked integration.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRIAGE = ROOT / "contracts" / "slither.triage.json"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _path_glob(pattern: str) -> re.Pattern[str]:
    """``*`` within one path segment, ``**`` across segments."""
    parts = re.split(r"(\*\*|\*)", pattern)
    regex = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(regex + r"\Z")


def _first_element(finding: dict[str, Any]) -> tuple[str, str]:
    elements = finding.get("elements") or [{}]
    first = elements[0]
    return first.get("source_mapping", {}).get("filename_relative", ""), first.get("name", "")


def _matches(entry: dict[str, Any], finding: dict[str, Any]) -> bool:
    path, name = _first_element(finding)
    return (
        entry["check"] == finding["check"]
        and _path_glob(entry["file"]).match(path) is not None
        and fnmatch.fnmatchcase(name, entry.get("element", "*"))
    )


def test_triage_entries_are_complete() -> None:
    triage = json.loads(TRIAGE.read_text())
    for entry in triage["entries"]:
        assert entry["verdict"] in ("false positive", "accepted", "fixed"), entry
        assert len(entry["reason"]) > 40, entry
        covered = entry.get("covered_by", "").split("::")[0]
        assert not covered or (ROOT / covered).is_file(), entry


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("slither") / "slither.json"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slither.sh"), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["success"], report.get("error")
    return list(report["results"].get("detectors", []))


def test_every_slither_finding_is_triaged(findings: list[dict[str, Any]]) -> None:
    entries = json.loads(TRIAGE.read_text())["entries"]
    untriaged = [
        f"{f['check']} ({f['impact']}): {f['description'].strip()[:300]}"
        for f in findings
        if not any(_matches(e, f) for e in entries)
    ]
    assert not untriaged, "untriaged Slither findings:\n" + "\n".join(untriaged)


def test_no_stale_triage_entries(findings: list[dict[str, Any]]) -> None:
    entries = json.loads(TRIAGE.read_text())["entries"]
    stale = [e for e in entries if not any(_matches(e, f) for f in findings)]
    assert not stale, f"triage entries that match no finding any more: {stale}"


def test_no_high_impact_finding_is_merely_accepted(findings: list[dict[str, Any]]) -> None:
    """High-impact findings must be fixed or shown to be false positives, not accepted."""
    entries = json.loads(TRIAGE.read_text())["entries"]
    for f in findings:
        if f["impact"] == "High":
            entry = next(e for e in entries if _matches(e, f))
            assert entry["verdict"] != "accepted", (f["description"], entry)
