"""`emr-node demo` end to end: the five flows and an anonymous read, in both modes."""

from __future__ import annotations

from node.demo import run_demo
from tests.node.conftest import RunningNode


def test_demo_observes_every_flow(running_node: RunningNode) -> None:
    lines: list[str] = []
    seen = run_demo(running_node.url, running_node.admin_token, say=lines.append)
    assert seen["ada_read"] and seen["patient_read"] and seen["bob_break_glass_read"]
    assert seen["patient_saw_break_glass"]
    assert seen["bob_denied"] and seen["ada_denied_after_revoke"]
    assert seen["verified"] and seen["forged_rejected"]
    assert seen["zk_read"]
    events = seen["events"]
    assert isinstance(events, dict)
    assert events["ConsentGranted"] == 1 and events["ConsentRevoked"] == 1
    assert any("a nurse read it anonymously" in line for line in lines)
