"""``GET /fhir/metadata``: the CapabilityStatement of what the façade supports."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from node.fhir.common import (
    FHIR_MEDIA_TYPE,
    NEGOTIATE,
    FhirJSONResponse,
    FhirRoute,
    base_url,
    capability_statement,
)
from node.fhir.documents import instant

router = APIRouter(route_class=FhirRoute, tags=["fhir"])

_STARTED = instant(int(time.time()))


@router.get(
    "/metadata",
    summary="FHIR CapabilityStatement: what this server supports (anyone)",
    dependencies=[NEGOTIATE],
    response_class=FhirJSONResponse,
    responses={
        200: {"content": {FHIR_MEDIA_TYPE: {}}, "description": "the CapabilityStatement"},
        406: {"description": "_format or Accept asks for XML: this server speaks JSON only"},
    },
)
def metadata(request: Request) -> Response:
    statement = capability_statement(base_url(request), request.app.version, _STARTED)
    return FhirJSONResponse(statement)
