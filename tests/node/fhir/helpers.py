"""Shared pieces of the FHIR tests: resources to post and a FHIR HTTP client."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from node.fhir.common import CATEGORY_SYSTEM, FHIR_JSON

LOINC = "http://loinc.org"


def document(
    patient: str,
    content: bytes = b"hello",
    *,
    category: str = "lab",
    identifier: str | None = None,
    date: str = "2024-01-01T10:00:00Z",
    type_code: str = "11502-2",
    replaces: str | None = None,
    description: str = "CBC",
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient}"},
        "type": {"coding": [{"system": LOINC, "code": type_code, "display": "Lab report"}]},
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "date": date,
        "description": description,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(content).decode(),
                }
            }
        ],
    }
    if identifier is not None:
        doc["identifier"] = [{"system": "urn:oid:1.2.3", "value": identifier}]
    if replaces is not None:
        doc["relatesTo"] = [
            {"code": "replaces", "target": {"reference": f"DocumentReference/{replaces}"}}
        ]
    return doc


def transaction(resources: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for i, r in enumerate(resources)
        ],
    }


class Fhir:
    """httpx against ``<node>/fhir`` with a bearer token."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Accept": FHIR_JSON}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=url + "/fhir", headers=headers, timeout=60)

    def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return self.http.post(
            path,
            content=json.dumps(body),
            headers={"Content-Type": FHIR_JSON, **headers},
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def close(self) -> None:
        self.http.close()


def issues(r: httpx.Response) -> list[dict[str, Any]]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert r.headers["content-type"].startswith(FHIR_JSON)
    return list(body["issue"])
