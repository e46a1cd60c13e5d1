"""DICOMweb over real HTTP: STOW-RS stores, QIDO-RS finds, WADO-RS retrieves through the
consent-checked read flow (the patient, a stranger, a grantee), de-identified on request;
bad bodies are clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.client import Scope
from node.dicom.dicomweb import (
    FAILED_SOP_SEQUENCE,
    FAILURE_REASON,
    REFERENCED_SOP_INSTANCE,
    REFERENCED_SOP_SEQUENCE,
    RETRIEVE_URL,
    multipart_related,
)
from node.dicom.ingest import StoreStatus, issuer_system
from tests.node.conftest import RunningNode
from tests.node.dicom.conftest import (
    TEST_FILES_DIR,
    encode,
    fresh_copy,
    read,
    wado,
)

STOW = "/dicomweb/studies"


@pytest.fixture(scope="module")
def tokens(dicom_node: RunningNode) -> dict[str, str]:
    with dicom_node.client(dicom_node.admin_token) as admin:
        return {
            "hospital": admin.create_token("pacs", "hospital"),
            "auditor": admin.create_token("audit", "auditor"),
        }


@pytest.fixture
def http(dicom_node: RunningNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dicom_node.url, timeout=60) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stow(http: httpx.Client, token: str, parts: list[bytes], **kw: Any) -> httpx.Response:
    body, content_type = multipart_related(parts, kw.pop("media_type", "application/dicom"))
    headers = {**_bearer(token), "Content-Type": kw.pop("content_type", content_type)}
    return http.post(STOW, content=kw.pop("body", body), headers=headers)


def _session(rn: RunningNode, account: LocalAccount) -> str:
    with rn.client() as public:
        return public.login(account)


def _uids(answer: dict[str, Any], sequence: str) -> list[str]:
    return [item[REFERENCED_SOP_INSTANCE]["Value"][0] for item in answer[sequence]["Value"]]


def test_stow_qido_wado_round_trip(
    dicom_node: RunningNode, http: httpx.Client, tokens: dict[str, str]
) -> None:
    patient = Account.create()
    # PatientID = the wallet address: maps directly. Another of the same study by MRN.
    ct = fresh_copy("CT_small.dcm", PatientID=patient.address)
    mr = fresh_copy(
        "MR_small.dcm",
        PatientID="MRN-STOW",
        IssuerOfPatientID="STOWHOSP",
        StudyInstanceUID=ct.StudyInstanceUID,
        StudyDate="20240301",
    )
    dicom_node.node.patients.link(
        issuer_system("STOWHOSP"), "MRN-STOW", patient.address, source="test"
    )
    unknown = fresh_copy("MR_small.dcm", PatientID="NOT-LINKED")
    parts = [encode(ct), encode(mr), b"not dicom at all", encode(unknown)]

    r = stow(http, tokens["hospital"], parts)

    assert r.status_code == 202, r.text  # some stored, some not
    assert r.headers["content-type"].startswith("application/dicom+json")
    answer = r.json()
    assert _uids(answer, REFERENCED_SOP_SEQUENCE) == [ct.SOPInstanceUID, mr.SOPInstanceUID]
    failed = answer[FAILED_SOP_SEQUENCE]["Value"]
    assert [f[FAILURE_REASON]["Value"][0] for f in failed] == [
        StoreStatus.CANNOT_UNDERSTAND,
        StoreStatus.UNKNOWN_PATIENT,
    ]
    url = answer[REFERENCED_SOP_SEQUENCE]["Value"][0][RETRIEVE_URL]["Value"][0]
    assert url.endswith(
        f"/dicomweb/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
        f"/instances/{ct.SOPInstanceUID}"
    )

    # QIDO-RS: the hospital finds the study by either id, with both instances counted.
    hospital = _bearer(tokens["hospital"])
    r = http.get(STOW, params={"StudyInstanceUID": ct.StudyInstanceUID}, headers=hospital)
    assert r.status_code == 200, r.text
    (study,) = r.json()
    assert study["0020000D"]["Value"] == [ct.StudyInstanceUID]
    assert study["00201208"]["Value"] == [2]
    assert sorted(study["00080061"]["Value"]) == ["CT", "MR"]
    r = http.get(STOW, params={"PatientID": "MRN-STOW"}, headers=hospital)
    assert [s["0020000D"]["Value"] for s in r.json()] == [[ct.StudyInstanceUID]]
    r = http.get(f"{STOW}/{ct.StudyInstanceUID}/series", headers=hospital)
    assert sorted(s["0020000E"]["Value"][0] for s in r.json()) == sorted(
        {ct.SeriesInstanceUID, mr.SeriesInstanceUID}
    )
    r = http.get(
        f"{STOW}/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances", headers=hospital
    )
    (instance,) = r.json()
    assert instance["00080018"]["Value"] == [ct.SOPInstanceUID]
    assert instance[RETRIEVE_URL]["Value"] == [url]
    # StudyDate: the MR's day and a range around it find the study; another day does not.
    for date, found in (("20240301", True), ("20240229-20240302", True), ("20230101", False)):
        r = http.get(STOW, params={"StudyDate": date, "PatientID": "MRN-STOW"}, headers=hospital)
        assert r.status_code == (200 if found else 204), (date, r.text)

    # The patient's own search sees it; a stranger's sees nothing.
    session = _session(dicom_node, patient)
    r = http.get(STOW, params={"StudyInstanceUID": ct.StudyInstanceUID}, headers=_bearer(session))
    assert r.status_code == 200 and len(r.json()) == 1
    stranger = Account.create()
    stranger_session = _session(dicom_node, stranger)
    r = http.get(
        STOW, params={"StudyInstanceUID": ct.StudyInstanceUID}, headers=_bearer(stranger_session)
    )
    assert r.status_code == 204

    # WADO-RS: the patient reads the instance as stored (byte for byte).
    (content,) = wado(http, session, ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    assert content == parts[0]
    # A stranger has no consent: 403 (and the refused attempt is logged).
    r = http.get(
        f"{STOW}/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}",
        headers=_bearer(stranger_session),
    )
    assert r.status_code == 403, r.text
    # With the patient's consent for imaging, the grantee reads it.
    with dicom_node.client() as public:
        public.grant(patient, stranger.address, Scope.category("imaging"))
    (granted,) = wado(
        http, stranger_session, ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID
    )
    assert granted == parts[0]
    # The wrong study or series for the instance: 404.
    r = http.get(
        f"{STOW}/1.2.3/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}",
        headers=_bearer(session),
    )
    assert r.status_code == 404

    # De-identified on export: identity gone, UIDs replaced the same way each time.
    (deid,) = wado(
        http,
        session,
        ct.StudyInstanceUID,
        ct.SeriesInstanceUID,
        ct.SOPInstanceUID,
        deidentify="true",
    )
    out = read(deid)
    assert out.PatientID == "" and out.PatientName == ""
    assert out.PatientIdentityRemoved == "YES"
    assert out.SOPInstanceUID != ct.SOPInstanceUID
    assert out.StudyInstanceUID != ct.StudyInstanceUID
    assert out.PixelData == ct.PixelData
    (again,) = wado(
        http,
        session,
        ct.StudyInstanceUID,
        ct.SeriesInstanceUID,
        ct.SOPInstanceUID,
        deidentify="true",
    )
    assert read(again).SOPInstanceUID == out.SOPInstanceUID


def test_stow_of_a_resent_instance_does_not_store_it_twice(
    dicom_node: RunningNode, http: httpx.Client, tokens: dict[str, str]
) -> None:
    ds = fresh_copy("MR_small.dcm", PatientID=Account.create().address)
    first = stow(http, tokens["hospital"], [encode(ds)])
    again = stow(http, tokens["hospital"], [encode(ds), encode(ds)])
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert _uids(again.json(), REFERENCED_SOP_SEQUENCE) == [ds.SOPInstanceUID] * 2
    r = http.get(
        f"{STOW}/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances",
        params={"SOPInstanceUID": ds.SOPInstanceUID},
        headers=_bearer(tokens["hospital"]),
    )
    assert len(r.json()) == 1


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b"plain text"], "0xC000"),
        ([(TEST_FILES_DIR / "MR_truncated.dcm").read_bytes()], "truncated"),
        ([(TEST_FILES_DIR / "CT_small.dcm").read_bytes()[:3000]], "0xC000"),
        ([(TEST_FILES_DIR / "no_meta.dcm").read_bytes()], "Part 10"),
    ],
)
def test_stow_with_nothing_storable_is_409_with_each_reason(
    http: httpx.Client, tokens: dict[str, str], parts: list[bytes], reason: str
) -> None:
    r = stow(http, tokens["hospital"], parts)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "conflict" and reason in body["detail"]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"content_type": "application/dicom"}, "multipart/related"),
        ({"content_type": 'multipart/related; type="application/dicom"'}, "boundary"),
        ({"content_type": 'multipart/related; type="application/json"; boundary=x'}, "type"),
        ({"body": b"--b\r\nContent-Type: application/dicom\r\n\r\nabc"}, "boundary"),
        ({"content_type": "multipart/related; boundary=b", "body": b"no parts"}, "no part"),
        (
            {
                "content_type": "multipart/related; boundary=b",
                "body": b"--b\r\nContent-Type: application/dicom\r\n\r\nabc",
            },
            "closing boundary",
        ),
    ],
)
def test_stow_with_a_malformed_body_is_400(
    http: httpx.Client, tokens: dict[str, str], kw: dict[str, Any], reason: str
) -> None:
    r = stow(http, tokens["hospital"], [b"x"], **kw)
    assert r.status_code == 400, r.text
    assert reason in r.json()["detail"]


def test_stow_needs_a_hospital_token(http: httpx.Client, tokens: dict[str, str]) -> None:
    ds = fresh_copy("CT_small.dcm", PatientID=Account.create().address)
    assert stow(http, tokens["auditor"], [encode(ds)]).status_code == 403
    assert stow(http, "emr_bogus", [encode(ds)]).status_code == 401


def test_qido_refuses_malformed_keys(http: httpx.Client, tokens: dict[str, str]) -> None:
    hospital = _bearer(tokens["hospital"])
    for params in ({"StudyDate": "2024-03-01"}, {"StudyInstanceUID": "1.2.x"}, {"limit": 0}):
        r = http.get(STOW, params=params, headers=hospital)
        assert r.status_code == 422, (params, r.text)
    assert http.get(f"{STOW}/abc/series", headers=hospital).status_code == 422
