"""The hook through which reads ask whether consent allows them (HAPI FHIR's consent
service habit: one narrow interface, implementations composed behind it)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from node.chain.abc import ChainClientAPI
from node.consent.typed_data import AccessBasis


class AccessDeciderAPI(ABC):
    @abstractmethod
    def basis(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes
    ) -> AccessBasis:
        """The first basis on which ``grantee`` may read the record now (NONE if none)."""


class ChainAccessDecider(AccessDeciderAPI):
    """Asks the chain every time."""

    def __init__(self, chain: ChainClientAPI) -> None:
        self._chain = chain

    def basis(
        self, patient: str, grantee: str, record_id: bytes, category_hash: bytes
    ) -> AccessBasis:
        return self._chain.access_basis(patient, grantee, record_id, category_hash)
