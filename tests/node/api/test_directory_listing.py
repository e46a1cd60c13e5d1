"""GET /clinicians/directory: this hospital's clinicians with their names, readable by a
patient's wallet session (choosing a grantee) and by API tokens (issue 13)."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account

from tests.node.conftest import RunningNode


def test_wallets_and_tokens_read_the_directory(embedded_node: RunningNode) -> None:
    rn = embedded_node
    ada, bo = Account.create().address, Account.create().address
    with rn.client(rn.admin_token) as admin:
        hospital = admin.create_token("ehr", "hospital")
        auditor = admin.create_token("audit", "auditor")
        session = admin.login(Account.create())
    with httpx.Client(base_url=rn.url, timeout=60) as http:
        h = {"Authorization": f"Bearer {hospital}"}
        r = http.post(
            "/clinicians",
            json={"address": ada, "role": "physician", "name": "Dr Ada Lind"},
            headers=h,
        )
        assert r.status_code == 201 and r.json()["name"] == "Dr Ada Lind"
        assert (
            http.post("/clinicians", json={"address": bo, "role": "nurse"}, headers=h).json()[
                "name"
            ]
            is None
        )
        listed = http.get("/clinicians", headers=h).json()
        assert [(c["address"], c["name"]) for c in listed] == [(ada, "Dr Ada Lind"), (bo, None)]
        member_id = rn.node.chain.member_id(rn.node.hospital)
        expected = [
            {
                "address": ada,
                "name": "Dr Ada Lind",
                "role": "physician",
                "hospital": member_id,
                "hospital_name": "Test General",
            },
            {
                "address": bo,
                "name": None,
                "role": "nurse",
                "hospital": member_id,
                "hospital_name": "Test General",
            },
        ]
        for token in (session, hospital, auditor, rn.admin_token):
            r = http.get("/clinicians/directory", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json() == expected
        # the licence expiry and registration time stay with the hospital's own listing
        assert "licence_expiry" not in r.json()[0] and "added_at" not in r.json()[0]
        assert http.get("/clinicians/directory").status_code == 401
        # a wallet still may not register or list the hospital's own view
        w = {"Authorization": f"Bearer {session}"}
        assert http.get("/clinicians", headers=w).status_code == 403
        assert (
            http.post("/clinicians", json={"address": bo, "role": "x"}, headers=w).status_code
            == 403
        )
        # renaming keeps one entry
        http.post("/clinicians", json={"address": bo, "role": "nurse", "name": "Bo Ek"}, headers=h)
        names = [c["name"] for c in http.get("/clinicians/directory", headers=w).json()]
        assert names == ["Dr Ada Lind", "Bo Ek"]


@pytest.mark.parametrize("name", ["", "   ", "\u2028", "x" * 101, 5])
def test_bad_names_are_refused(embedded_node: RunningNode, name: object) -> None:
    with embedded_node.client(embedded_node.admin_token) as admin:
        hospital = admin.create_token("ehr", "hospital")
    r = httpx.post(
        f"{embedded_node.url}/clinicians",
        json={"address": Account.create().address, "role": "physician", "name": name},
        headers={"Authorization": f"Bearer {hospital}"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_failed" and "name" in r.json()["detail"]
