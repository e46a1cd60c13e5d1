"""A node with its HL7 listener on a free loopback port, built in-process: on the embedded
default, and (integration) on the production services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.settings import Hl7Settings, Settings
from tests.node.conftest import RunningNode, make_settings, start_node
from tests.node.hl7.messages import FACILITY
from tests.node.production import ProductionServices

HL7 = Hl7Settings(
    enabled=True,
    port=0,
    allowed_facilities=[FACILITY, "LAB2"],
    max_message_bytes=64 * 1024,
    idle_timeout=30.0,
)


def with_hl7(settings: Settings, hl7: Hl7Settings = HL7) -> Settings:
    return settings.model_copy(update={"hl7": hl7})


def hl7_address(rn: RunningNode) -> tuple[str, int]:
    (listener,) = [x for x in rn.node.listeners if x.name == "hl7"]
    return listener.address


@pytest.fixture(scope="module")
def hl7_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One embedded node for a module's tests (each uses its own control ids and wallets)."""
    data_dir = tmp_path_factory.mktemp("hl7") / "node"
    rn = start_node(data_dir, with_hl7(make_settings(data_dir)))
    yield rn
    rn.stop()


@pytest.fixture
def production_hl7_node(
    production_services: ProductionServices, tmp_path: Path
) -> Iterator[RunningNode]:
    data_dir = tmp_path / "node"
    rn = start_node(data_dir, with_hl7(production_services.settings(data_dir)))
    yield rn
    rn.stop()
