"""Page tests: a real node, Debian's Chromium driven by playwright-core from Node.js.

Each test seeds what it needs through the API in Python, then runs one .mjs script that
drives the browser and asserts with node:assert; its exit code is the verdict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "node" / "web" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

RunScript = Callable[[str, dict[str, Any]], subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def browser_ready() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run scripts/browser.sh install")
    if shutil.which("node") is None or not (ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("Node.js and playwright-core are needed: run scripts/setup.sh --dev")


@pytest.fixture
def run_script(browser_ready: None) -> RunScript:
    def run(script: str, params: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "EMR_WEB_TEST": json.dumps({"artifacts": str(ARTIFACTS), **params})}
        done = subprocess.run(
            ["node", str(ROOT / "tests" / "node" / "web" / script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
        return done

    return run
