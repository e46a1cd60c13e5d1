"""The FHIR R4 façade: resources mapped onto the node's model (DocumentMeta, receipts,
consents, the audit trail), parsed and validated with fhir.resources' R4B models.

``common`` holds what every resource shares (errors as OperationOutcome, the FHIR JSON
response, content negotiation, SMART scopes, search Bundles, the CapabilityStatement
registry); each resource module maps one resource type. Nothing here stores or decides
access: the routers in node/api/routers/fhir/ call the node's flows and services.
"""
