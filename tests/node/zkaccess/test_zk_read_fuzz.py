"""Fuzzing POST /zk/records/{id}/read (v2 bodies): random bodies get a 4xx with a reason,
never a 5xx, and change nothing on-chain."""

from __future__ import annotations

import time

import httpx
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.client import Scope
from tests.node.conftest import RunningNode
from zk.field import P, R

numbers = st.one_of(
    st.integers(0, R - 1),
    st.integers(R, P + 5),
    st.integers(-5, -1),
    st.sampled_from([0, 1, R, P, 2**256]),
)
as_json = st.one_of(numbers.map(str), numbers.map(hex), numbers, st.text(max_size=8), st.none())
small = st.one_of(
    st.integers(-3, 2**33), st.sampled_from([0, 1, 2, 3, 2**16, 2**32]), st.text(max_size=4)
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "root": as_json,
        "current_time": st.one_of(st.integers(-10, 2**65), st.text(max_size=4)),
        "signal": st.one_of(
            st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
            st.text(max_size=70),
        ),
        "epoch_nullifier": as_json,
        "scope_kind": small,
        "class_hospital": small,
        "class_roles": small,
        "proof": st.lists(as_json, min_size=0, max_size=9),
        # Fields a cheating client might add: refused, never ignored.
        "role": st.sampled_from(["physician", 0]),
        "hospital_id": st.integers(0, 3),
    },
)
# Well-formed bodies too, so that requests reach the consent, policy, time and proof checks.
valid_bodies = st.fixed_dictionaries(
    {
        "root": st.integers(0, R - 1).map(str),
        "current_time": st.integers(0, 2**40 - 1),
        "signal": st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
        "epoch_nullifier": st.integers(0, R - 1).map(str),
        "scope_kind": st.integers(0, 2),
        "class_hospital": st.sampled_from([0, 1, 2, 2**32 - 1]),
        "class_roles": st.sampled_from([1, 2, 3, 2**16 - 1]),
        "proof": st.lists(st.integers(0, P - 1).map(str), min_size=8, max_size=8),
    }
)


_RECORDS: dict[str, str] = {}


def _fresh(body: dict[str, object]) -> dict[str, object]:
    """A body naming the live class (nurses of any hospital, the record's category) with a
    current time: only the proof can fail."""
    return {
        **body,
        "current_time": int(time.time()),
        "scope_kind": 1,
        "class_hospital": 0,
        "class_roles": 2,
    }


def _lab_record(rn: RunningNode) -> str:
    if rn.url not in _RECORDS:
        with rn.client(rn.admin_token) as admin:
            token = admin.create_token("ehr", "hospital")
        with rn.client(token) as hospital:
            hospital.zk.propose_policy("lab", ["physician", "nurse"])
            patient = Account.create()
            record_id = hospital.upload(patient.address, b"x", category="lab")["record_id"]
            # A live class consent: requests naming it reach the time and proof checks.
            hospital.grant_class(patient, ["nurse"], Scope.category("lab"))
            # Anchored before the examples start: its transaction must not land during one.
            hospital.wait_anchored(record_id)
            _RECORDS[rn.url] = record_id
    return _RECORDS[rn.url]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(bodies, valid_bodies, valid_bodies.map(_fresh)))
def test_random_read_requests_are_refused_cleanly(embedded_node: RunningNode, body) -> None:
    record = _lab_record(embedded_node)  # with a policy: requests reach the verifier
    head = embedded_node.node.chain.head_block()
    response = httpx.post(f"{embedded_node.url}/zk/records/{record}/read", json=body, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert response.json().get("detail")
    assert embedded_node.node.chain.head_block() == head
