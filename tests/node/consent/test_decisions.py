"""Cached access decisions: hits when nothing changed, never stale after a revoke or expiry."""

from __future__ import annotations

import time

import pytest
from eth_account import Account

from node.client import ApiError, EmrClient, Scope
from node.consent.decisions import CachedAccessDecider
from tests.node.conftest import RunningNode


def test_cache_hits_then_a_revoke_wins_at_once(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    decider = running_node.node.access
    assert isinstance(decider, CachedAccessDecider)
    patient, doc = Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"chart", category="note")["record_id"]
    public.grant(patient, doc.address, Scope.record(rid))
    session = public.login(doc)
    hits = decider.hits
    for _ in range(3):
        assert public.read(rid, session).content == b"chart"
    assert decider.hits >= hits + 2  # the first read decided, the next ones hit
    public.revoke(patient, doc.address, Scope.record(rid))
    with pytest.raises(ApiError) as denied:  # the very next read, no waiting
        public.read(rid, session)
    assert denied.value.status == 403


def test_a_cached_decision_never_outlives_its_consent(
    running_node: RunningNode, hospital: EmrClient, public: EmrClient
) -> None:
    patient, doc = Account.create(), Account.create()
    rid = hospital.upload(patient.address, b"x-ray", category="imaging")["record_id"]
    # Chain time may run a few seconds ahead of the wall clock (a block per transaction,
    # each at least a second later): set the expiry from the chain's clock.
    w3 = running_node.node.chain._w3  # type: ignore[attr-defined]
    expires_at = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time())) + 6
    public.grant(patient, doc.address, Scope.category("imaging"), expires_at=expires_at)
    session = public.login(doc)
    assert public.read(rid, session).content == b"x-ray"
    assert public.read(rid, session).content == b"x-ray"  # cached, with the consent's expiry
    while time.time() <= expires_at + 1:
        time.sleep(0.5)
    with pytest.raises(ApiError) as denied:
        public.read(rid, session)
    assert denied.value.status == 403
