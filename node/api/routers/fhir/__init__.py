"""The FHIR R4 façade under /fhir: one router per resource, all with ``FhirRoute`` (errors
as OperationOutcome) and content negotiation (``node.fhir.common``).

Each resource router registers its CapabilityStatement entry when its module is imported;
``GET /fhir/metadata`` renders exactly what the included routers registered.
"""

from __future__ import annotations

from fastapi import APIRouter

from node.api.routers.fhir import (  # issue 12: H-FHIR-CONSENT
    audit_event,
    binary,
    bundle,
    consent,
    documents,
    metadata,
    patient,
    provenance,
)
from node.fhir.common import FHIR_PREFIX, FhirRoute

router = APIRouter(route_class=FhirRoute)
# Each with the prefix (POST /fhir is the bundle router's empty path).
for module in (metadata, documents, binary, bundle, provenance, patient, consent, audit_event):
    router.include_router(module.router, prefix=FHIR_PREFIX)
