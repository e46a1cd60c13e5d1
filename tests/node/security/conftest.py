"""Fixtures of the OWASP API Security Top 10 suite (tests/node/security)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.node.conftest import RunningNode, start_node
from tests.node.security.helpers import Callers, make_callers


@pytest.fixture
def callers(running_node: RunningNode) -> Callers:
    return make_callers(running_node)


@pytest.fixture(scope="module")
def module_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One embedded node for a whole module (fuzzing: many examples, one node)."""
    rn = start_node(tmp_path_factory.mktemp("security") / "node")
    yield rn
    rn.stop()


@pytest.fixture(scope="module")
def module_callers(module_node: RunningNode) -> Callers:
    return make_callers(module_node)
