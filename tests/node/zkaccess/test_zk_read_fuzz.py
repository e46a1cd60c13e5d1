"""Fuzzing POST /zk/records/{id}/read: random bodies get a 4xx with a reason, never a 5xx,
and change nothing on-chain."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.node.conftest import RunningNode
from zk.field import P, R

numbers = st.one_of(
    st.integers(0, R - 1),
    st.integers(R, P + 5),
    st.integers(-5, -1),
    st.sampled_from([0, 1, R, P, 2**256]),
)
as_json = st.one_of(numbers.map(str), numbers.map(hex), numbers, st.text(max_size=8), st.none())
bodies = st.fixed_dictionaries(
    {},
    optional={
        "root": as_json,
        "current_time": st.one_of(st.integers(-10, 2**65), st.text(max_size=4)),
        "signal": st.one_of(
            st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
            st.text(max_size=70),
        ),
        "nullifier_hash": as_json,
        "proof": st.lists(as_json, min_size=0, max_size=9),
    },
)


_RECORDS: dict[str, str] = {}


def _lab_record(rn: RunningNode) -> str:
    if rn.url not in _RECORDS:
        with rn.client(rn.admin_token) as admin:
            token = admin.create_token("ehr", "hospital")
        with rn.client(token) as hospital:
            hospital.zk.set_policy("lab", ["physician"])
            record_id = hospital.upload("0x" + "ef" * 20, b"x", category="lab")["record_id"]
            # Anchored before the examples start: its transaction must not land during one.
            hospital.wait_anchored(record_id)
            _RECORDS[rn.url] = record_id
    return _RECORDS[rn.url]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_random_read_requests_are_refused_cleanly(embedded_node: RunningNode, body) -> None:
    record = _lab_record(embedded_node)  # with a policy: requests reach the verifier
    head = embedded_node.node.chain.head_block()
    response = httpx.post(f"{embedded_node.url}/zk/records/{record}/read", json=body, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert response.json().get("detail")
    assert embedded_node.node.chain.head_block() == head
