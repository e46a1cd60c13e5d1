"""DICOM: a Storage SCP (C-ECHO, C-STORE) a modality or PACS pushes to, the parsing that
turns an instance into a record's document metadata, the shared ingest step the SCP and
STOW-RS both call, and de-identification on export (PS3.15 Annex E, a documented subset).

A thin façade over the node's flows: instances are uploaded through the node's upload
coalescer (encrypted, indexed and anchored like any record) and read back through the
consent-checked read flow. See docs/dicom.md.
"""
