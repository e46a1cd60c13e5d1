"""The built pages: committed output matches the sources, and the node serves them with a
policy that allows no script but its own."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from node.api.web import STATIC
from tests.node.conftest import RunningNode

ROOT = Path(__file__).resolve().parents[3]


def _files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()}


def test_committed_build_matches_a_fresh_build(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (ROOT / "node_modules" / "vite").is_dir():
        pytest.fail("Node.js and vite are needed: run scripts/setup.sh --dev")
    out = tmp_path / "static"
    subprocess.run(["bash", "scripts/build-web.sh", str(out)], cwd=ROOT, check=True, timeout=300)
    assert _files(out) == _files(STATIC), "node/web/static is stale: run scripts/build-web.sh"
    different = [f for f in _files(out) if not filecmp.cmp(out / f, STATIC / f, shallow=False)]
    assert different == [], f"stale build output: {different}; run scripts/build-web.sh"


def test_typescript_sources_typecheck() -> None:
    done = subprocess.run(
        ["npx", "--no-install", "tsc", "-p", "node/web/tsconfig.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_sources_never_turn_text_into_html() -> None:
    """The XSS defence behind the CSP: text goes into the page as text (``h()``,
    ``textContent``), never parsed as HTML."""
    sinks = (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    )
    found = [
        f"{path.relative_to(ROOT)}: {sink}"
        for path in (ROOT / "node" / "web" / "src").rglob("*.ts")
        for sink in sinks
        if sink in path.read_text()
    ]
    assert found == []


def test_pages_are_served_with_a_strict_policy(embedded_node: RunningNode) -> None:
    for page in ("portal", "explorer"):
        short = httpx.get(f"{embedded_node.url}/{page}", follow_redirects=False)
        assert short.status_code == 307 and short.headers["location"] == f"/web/{page}/"
        html = httpx.get(f"{embedded_node.url}/web/{page}/")
        assert html.status_code == 200 and "<main" in html.text
        csp = html.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert html.headers["x-content-type-options"] == "nosniff"
        # Every script the page loads is a file of this node, not inline code.
        assert "<script>" not in html.text.replace(" ", "")
        for src in (s.split('"')[1] for s in html.text.split("src=")[1:]):
            assert src.startswith("/web/assets/"), src
            assert httpx.get(f"{embedded_node.url}{src}").status_code == 200


def test_redirects_cannot_be_steered_and_files_outside_are_unreachable(
    embedded_node: RunningNode,
) -> None:
    steered = httpx.get(
        f"{embedded_node.url}/portal?next=https://evil.example/&target=//evil.example",
        follow_redirects=False,
    )
    assert steered.headers["location"] == "/web/portal/"
    for path in ("/web/../node/api/web.py", "/web/%2e%2e/%2e%2e/pyproject.toml", "/web/nope.js"):
        response = httpx.get(f"{embedded_node.url}{path}")
        assert response.status_code == 404, path
        assert "Traceback" not in response.text
