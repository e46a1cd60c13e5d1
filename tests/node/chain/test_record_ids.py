"""Record ids in the hospital's namespace (RecordRegistry's ownership rule) and the upload
flow's source of the member id."""

from __future__ import annotations

from typing import cast

import pytest

from node.chain.abc import ChainClientAPI
from node.chain.record_ids import new_record_id, record_member_id
from node.exceptions import Conflict
from node.flows.upload_record import HospitalNamespace


def test_new_ids_start_with_the_member_id_and_are_random() -> None:
    ids = {new_record_id(7) for _ in range(100)}
    assert len(ids) == 100
    assert all(len(rid) == 32 and rid[:4] == b"\x00\x00\x00\x07" for rid in ids)
    assert all(record_member_id(rid) == 7 for rid in ids)
    assert record_member_id(new_record_id(2**32 - 1)) == 2**32 - 1
    assert record_member_id(b"\x00" * 32) == 0


@pytest.mark.parametrize("bad", [0, -1, 2**32, True, "1"])
def test_no_id_outside_a_member_namespace(bad: object) -> None:
    with pytest.raises(ValueError):
        new_record_id(bad)  # type: ignore[arg-type]


def test_record_member_id_needs_32_bytes() -> None:
    with pytest.raises(ValueError):
        record_member_id(b"\x00" * 31)


class _Chain:
    hospital = "0x" + "22" * 20

    def __init__(self, member_id: int) -> None:
        self.answer = member_id
        self.asked = 0

    def member_id(self, address: str) -> int:
        assert address == self.hospital
        self.asked += 1
        return self.answer


def test_hospital_namespace_refuses_until_a_member_then_keeps_the_id() -> None:
    chain = _Chain(0)
    namespace = HospitalNamespace(cast(ChainClientAPI, chain))
    with pytest.raises(Conflict, match="not a Consortium member"):
        namespace.member_id()
    chain.answer = 5  # admitted
    assert namespace.member_id() == 5
    chain.answer = 0  # never asked again: a member id survives rotations
    assert namespace.member_id() == 5
    assert chain.asked == 2
