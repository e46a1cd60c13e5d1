"""docs/security.md maps threats to tests: every ``path::test`` it names must exist, so a
renamed or deleted test cannot leave a threat silently uncovered."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"`?((?:tests|scripts|contracts)/[\w/.-]+\.\w+)(?:::(\w+))?")


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for node in tree.body:  # module constants (e.g. the fuzzing budget)
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_every_referenced_test_exists() -> None:
    text = DOC.read_text()
    refs = REFERENCE.findall(text)
    assert len(refs) > 100
    missing = []
    for path, name in refs:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and name not in _names(file):
            missing.append(f"{path}::{name}")
    assert not missing, missing


def test_every_security_test_module_is_in_the_map() -> None:
    text = DOC.read_text()
    here = Path(__file__).parent
    for module in sorted(here.glob("test_*.py")):
        if module.name == Path(__file__).name:
            continue
        assert f"tests/node/security/{module.name}" in text, module.name
