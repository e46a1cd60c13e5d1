"""Route-level pieces the FHIR resource routers share: the ``responses=`` entries that
read the same on every route."""

from __future__ import annotations

from typing import Any

from node.fhir.common import FHIR_JSON, FHIR_MEDIA_TYPE

# A 2xx answer's content: FHIR JSON (the route adds its own description).
JSON: dict[str, Any] = {"content": {FHIR_MEDIA_TYPE: {}}}

SEARCHSET = {**JSON, "description": "a searchset Bundle with total and paging links"}
BAD_SEARCH = {"description": "an unknown search parameter or a bad value"}
UNAUTHENTICATED = {"description": "no or unknown credential"}
NOT_ACCEPTABLE = {"description": "_format or Accept asks for XML"}
CHAIN_DOWN = {"description": "the chain is unreachable"}


def json_body(description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose required body is one FHIR JSON resource."""
    return {
        "requestBody": {
            "required": True,
            "content": {FHIR_JSON: {"schema": {"type": "object", "description": description}}},
        }
    }
