"""A Python client of the node's HTTP API, used by the CLI, ``emr-node demo`` and tests.

It also signs for people: a patient's EIP-712 consent and a wallet's SIWE sign-in, with
eth-account keys held by the caller (a browser wallet does the same with
``eth_signTypedData_v4`` and ``personal_sign``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from node.consent.typed_data import ScopeKind, category_hash, full_message


class ApiError(Exception):
    """The node answered with an error status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    value: bytes

    @classmethod
    def record(cls, record_id: str) -> Scope:
        return cls(ScopeKind.RECORD, bytes.fromhex(record_id.removeprefix("0x")))

    @classmethod
    def category(cls, name: str) -> Scope:
        return cls(ScopeKind.CATEGORY, category_hash(name))

    @classmethod
    def all(cls) -> Scope:
        return cls(ScopeKind.ALL, b"\x00" * 32)


@dataclass(frozen=True)
class BatchRecord:
    """One record of ``EmrClient.upload_batch``."""

    patient: str
    content: bytes
    category: str
    content_type: str = "application/octet-stream"
    previous_id: str | None = None


class EmrClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmrClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------
    def _call(
        self, method: str, path: str, *, token: str | None = None, **kw: Any
    ) -> httpx.Response:
        bearer = token or self.token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        response = self._http.request(method, path, headers=headers, **kw)
        if response.status_code >= 400:
            try:
                body = response.json()
                code, detail = body.get("error", "error"), body.get("detail", response.text)
            except ValueError:
                code, detail = "error", response.text
            raise ApiError(response.status_code, str(code), str(detail))
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._call(method, path, **kw).json()

    @property
    def zk(self) -> ZkApi:
        return ZkApi(self)

    @property
    def governance(self) -> GovernanceApi:
        return GovernanceApi(self)

    @property
    def wallets(self) -> WalletsApi:
        return WalletsApi(self)

    # -- node ------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._json("GET", "/info")

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")

    def create_token(self, name: str, role: str, *, expires_in: int | None = None) -> str:
        """Create an API token (admin token); return the token (shown once)."""
        return self.issue_token(name, role, expires_in=expires_in)["token"]

    def issue_token(self, name: str, role: str, *, expires_in: int | None = None) -> dict[str, Any]:
        """Create an API token (admin token): its id, name, role, expires_at and token."""
        body: dict[str, Any] = {"name": name, "role": role}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._json("POST", "/admin/tokens", json=body)

    def tokens(self) -> list[dict[str, Any]]:
        """Every API token without its secret: id, name, role, times, live (admin token)."""
        return self._json("GET", "/admin/tokens")

    def revoke_token(self, token_id: str, *, force: bool = False) -> dict[str, Any]:
        """Revoke an API token by id (admin token); ``force`` for the last live admin one."""
        params = {"force": "true"} if force else None
        return self._json("POST", f"/admin/tokens/{token_id}/revoke", params=params)

    def rotate_keys(self) -> int:
        """Rotate the node's KEK (admin token); return the new version."""
        return int(self._json("POST", "/admin/keys/rotate")["version"])

    def rotate_signer(self) -> dict[str, Any]:
        """Rotate the node's signing key through a Consortium vote (admin token)."""
        return dict(self._json("POST", "/admin/keys/signer/rotate"))

    def key_status(self) -> dict[str, Any]:
        """KEK rotation status (admin token)."""
        return dict(self._json("GET", "/admin/keys"))

    def add_clinician(
        self, address: str, role: str, licence_expiry: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"address": address, "role": role}
        if licence_expiry is not None:
            body["licence_expiry"] = licence_expiry
        return self._json("POST", "/clinicians", json=body)

    # -- records ---------------------------------------------------------------
    def upload(
        self,
        patient: str,
        content: bytes,
        *,
        category: str,
        content_type: str = "application/octet-stream",
        previous_id: str | None = None,
    ) -> dict[str, Any]:
        data = {"patient": patient, "category": category, "content_type": content_type}
        if previous_id:
            data["previous_id"] = previous_id
        files = {"file": ("record", content, content_type)}
        return self._json("POST", "/records", data=data, files=files)

    def upload_batch(self, records: Sequence[BatchRecord]) -> list[dict[str, Any]]:
        """``POST /records/batch``: store every record or none (hospital token); return one
        result per record, in order, with the fields ``upload`` returns."""
        manifest: list[dict[str, str]] = []
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        for i, rec in enumerate(records):
            part = f"r{i}"
            entry = {
                "part": part,
                "patient": rec.patient,
                "category": rec.category,
                "content_type": rec.content_type,
            }
            if rec.previous_id:
                entry["previous_id"] = rec.previous_id
            manifest.append(entry)
            files.append((part, (part, rec.content, rec.content_type)))
        parts = [("manifest", (None, json.dumps(manifest), "application/json")), *files]
        return list(self._json("POST", "/records/batch", files=parts))

    def record(self, record_id: str, *, token: str | None = None) -> dict[str, Any]:
        return self._json("GET", f"/records/{record_id}", token=token)

    def records(self, **filters: Any) -> list[dict[str, Any]]:
        """``GET /records`` with filters (patient, category, limit, offset)."""
        return self._json("GET", "/records", params=filters)

    def receipt(self, record_id: str, *, token: str | None = None) -> dict[str, Any]:
        return self._json("GET", f"/records/{record_id}/receipt", token=token)

    def wait_anchored(self, record_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.receipt(record_id)
            if receipt["status"] == "anchored":
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"record {record_id} not anchored after {timeout} s")
            time.sleep(0.2)

    def read(self, record_id: str, session: str) -> httpx.Response:
        return self._call("GET", f"/records/{record_id}/content", token=session)

    def erase(self, record_id: str, reason: str) -> dict[str, Any]:
        """Crypto-shred one record (hospital token); 409 if it was already erased."""
        return self._json("POST", f"/records/{record_id}/erase", json={"reason": reason})

    def erase_patient(self, patient: str, reason: str) -> dict[str, Any]:
        """Crypto-shred every record of ``patient`` not erased yet (hospital token)."""
        return self._json("POST", f"/patients/{patient}/erase", json={"reason": reason})

    # -- wallet sign-in --------------------------------------------------------
    def login(self, account: LocalAccount) -> str:
        """Sign-In with Ethereum; return the session token."""
        challenge = self._json("POST", "/auth/challenge", json={"address": account.address})
        signed = account.sign_message(encode_defunct(text=challenge["message"]))
        body = {"message": challenge["message"], "signature": "0x" + signed.signature.hex()}
        return self._json("POST", "/auth/login", json=body)["token"]

    def logout(self, session: str, *, everywhere: bool = False) -> None:
        """End a wallet session (``everywhere``: every session of that wallet)."""
        params = {"everywhere": "true"} if everywhere else None
        self._call("POST", "/auth/logout", token=session, params=params)

    # -- consent ---------------------------------------------------------------
    def typed_data(self) -> dict[str, Any]:
        return self._json("GET", "/consents/typed-data")

    def nonce(self, patient: str) -> int:
        return int(self._json("GET", f"/consents/nonce/{patient}")["nonce"])

    def sign_consent(
        self,
        patient: LocalAccount,
        primary_type: str,
        grantee: str,
        scope: Scope,
        **kw: Any,
    ) -> dict[str, Any]:
        """Build and sign a Grant or Revoke; return the request body for the node."""
        return self._signed_consent(patient, primary_type, {"grantee": grantee}, scope, **kw)

    def _signed_consent(
        self,
        patient: LocalAccount,
        primary_type: str,
        reader: dict[str, Any],
        scope: Scope,
        *,
        expires_in: int = 30 * 24 * 3600,
        deadline_in: int = 3600,
        nonce: int | None = None,
        domain: dict[str, Any] | None = None,
        expires_at: int | None = None,
    ) -> dict[str, Any]:
        """Sign ``primary_type`` (Grant, Revoke, GrantClass, RevokeClass) for ``reader`` (a
        grantee, or a class's hospital and roles); return the request body for the node."""
        dom = domain or self.typed_data()["domain"]
        now = int(time.time())
        message: dict[str, Any] = {
            "patient": patient.address,
            **reader,
            "scopeKind": int(scope.kind),
            "scope": "0x" + scope.value.hex(),
            "nonce": self.nonce(patient.address) if nonce is None else nonce,
            "deadline": now + deadline_in,
        }
        if primary_type.startswith("Grant"):
            message["expiresAt"] = expires_at if expires_at is not None else now + expires_in
        to_sign = dict(message, scope=scope.value)
        signed = Account.sign_typed_data(
            patient.key, full_message=full_message(primary_type, to_sign, dom)
        )
        return {"message": message, "signature": "0x" + signed.signature.hex(), "domain": dom}

    def grant(self, patient: LocalAccount, grantee: str, scope: Scope, **kw: Any) -> dict[str, Any]:
        return self._json(
            "POST",
            "/consents/grant",
            json=self.sign_consent(patient, "Grant", grantee, scope, **kw),
        )

    def revoke(
        self, patient: LocalAccount, grantee: str, scope: Scope, **kw: Any
    ) -> dict[str, Any]:
        return self._json(
            "POST",
            "/consents/revoke",
            json=self.sign_consent(patient, "Revoke", grantee, scope, **kw),
        )

    def sign_class_consent(
        self,
        patient: LocalAccount,
        primary_type: str,
        roles: list[str] | int,
        scope: Scope,
        *,
        hospital: int = 0,
        **kw: Any,
    ) -> dict[str, Any]:
        """Build and sign a GrantClass or RevokeClass for readers of ``roles`` (names, or a
        mask) at member hospital ``hospital`` (0: any member hospital); return the body."""
        from zk.credentials import roles_mask

        mask = roles if isinstance(roles, int) else roles_mask(roles)
        reader = {"hospital": hospital, "roles": mask}
        return self._signed_consent(patient, primary_type, reader, scope, **kw)

    def grant_class(
        self, patient: LocalAccount, roles: list[str] | int, scope: Scope, **kw: Any
    ) -> dict[str, Any]:
        """Consent to anonymous reads by a class of readers (``hospital=`` member id, 0 any)."""
        return self._json(
            "POST",
            "/consents/class-grants",
            json=self.sign_class_consent(patient, "GrantClass", roles, scope, **kw),
        )

    def revoke_class(
        self, patient: LocalAccount, roles: list[str] | int, scope: Scope, **kw: Any
    ) -> dict[str, Any]:
        return self._json(
            "POST",
            "/consents/class-revokes",
            json=self.sign_class_consent(patient, "RevokeClass", roles, scope, **kw),
        )

    def class_consents(self, patient: str) -> list[dict[str, Any]]:
        """The patient's live reader-class consents."""
        return list(self._json("GET", f"/consents/class-consents/{patient}")["consents"])

    def relay_status(self, relay_id: int) -> dict[str, Any]:
        return self._json("GET", f"/consents/relays/{relay_id}")

    def break_glass(
        self,
        patient: str,
        clinician: str,
        reason: str,
        *,
        approved_by: str | None = None,
        duration: int = 3600,
        record_id: str | None = None,
    ) -> dict[str, Any]:
        """Open emergency access (hospital token) for a clinician of the directory,
        ``approved_by`` another (the node refuses it without an approver)."""
        body: dict[str, Any] = {
            "patient": patient,
            "clinician": clinician,
            "record_id": record_id,
            "duration_seconds": duration,
            "reason": reason,
        }
        if approved_by is not None:
            body["approved_by"] = approved_by
        return self._json("POST", "/break-glass", json=body)

    def my_break_glass(self, session: str, *, since: int | None = None) -> dict[str, Any]:
        """Every break-glass on the signed-in patient's records (wallet session)."""
        params = {"since": since} if since is not None else None
        return self._json("GET", "/me/break-glass", token=session, params=params)

    def reason(self, reason_hash: str) -> dict[str, Any]:
        """The reason, salt and approver behind an on-chain reasonHash (auditor token)."""
        return self._json("GET", f"/audit/reasons/{reason_hash}")

    # -- audit -----------------------------------------------------------------
    def audit_events(self, *, token: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/audit/events", params=params, token=token)

    def key_audit(self, *, verify: bool = False, **params: Any) -> dict[str, Any]:
        """The key audit log (GET /audit/keys); ``verify`` checks the chain and anchors."""
        q = {**params, "verify": str(verify).lower()}
        return self._json("GET", "/audit/keys", params=q)

    def verify_mirror(self) -> dict[str, Any]:
        return self._json("GET", "/audit/mirror/verify")

    def verify(self, record_id: str, content_hash: str | None = None) -> dict[str, Any]:
        params = {"content_hash": content_hash} if content_hash else {}
        return self._json("GET", f"/audit/records/{record_id}/verify", params=params)

    def verify_receipt(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """Check an anchoring receipt (as any member's ``receipt()`` answers it) against the
        chain at this node: ``valid`` and the ``failed`` checks (POST /audit/receipts/verify)."""
        return self._json("POST", "/audit/receipts/verify", json=receipt)


class ZkApi:
    """The node's zero-knowledge endpoints (``EmrClient.zk``)."""

    def __init__(self, client: EmrClient) -> None:
        self._c = client

    def info(self) -> dict[str, Any]:
        return self._c._json("GET", "/zk")

    def proving_key(self) -> bytes:
        return self._c._call("GET", "/zk/proving-key").content

    def issue_credentials(self, credentials: list[tuple[int, str]]) -> dict[str, Any]:
        """Issue credentials (hospital token) for (identity commitment, clinician address)
        pairs; role and licence expiry come from the node's clinician directory."""
        body = {
            "credentials": [
                {"identity_commitment": str(idc), "clinician": clinician}
                for idc, clinician in credentials
            ]
        }
        return self._c._json("POST", "/zk/credentials", json=body)

    def revoke_credential(self, leaf: int) -> dict[str, Any]:
        return self._c._json("POST", "/zk/credentials/revoke", json={"leaf": str(leaf)})

    def revoke_member(self, hospital: str) -> dict[str, Any]:
        """Revoke every credential of a removed member hospital (hospital token)."""
        return self._c._json("POST", "/zk/credentials/revoke-member", json={"hospital": hospital})

    def tree(self) -> dict[str, Any]:
        """Every leaf of the credential tree (the same answer for everyone)."""
        return self._c._json("GET", "/zk/tree")

    def propose_policy(self, category: str, roles: list[str]) -> dict[str, Any]:
        """Propose a category's roles policy to the Consortium (hospital token); it applies
        once a majority voted (at once when this hospital alone is one: ``proposal.state``
        is then ``executed``)."""
        return self._c._json("POST", f"/zk/policies/{category}/proposals", json={"roles": roles})

    def policy(self, category: str) -> dict[str, Any]:
        return self._c._json("GET", f"/zk/policies/{category}")

    def record_access(self, record_id: str) -> dict[str, Any]:
        """The category policy and the patient's live reader classes covering the record."""
        return self._c._json("GET", f"/zk/records/{record_id}/access")

    def read(self, record_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._c._json("POST", f"/zk/records/{record_id}/read", json=body)

    def accesses(self, record_id: str | None = None) -> list[dict[str, Any]]:
        params = {"record_id": record_id} if record_id else {}
        return self._c._json("GET", "/zk/accesses", params=params)

    def readers(
        self, record_id: str, from_time: int | None = None, to_time: int | None = None
    ) -> dict[str, Any]:
        """Per epoch: accesses and distinct epoch nullifiers of a record (auditor token)."""
        params: dict[str, Any] = {"record_id": record_id}
        if from_time is not None:
            params["from"] = from_time
        if to_time is not None:
            params["to"] = to_time
        return self._c._json("GET", "/zk/accesses/readers", params=params)


class GovernanceApi:
    """Consortium proposals through the node (``EmrClient.governance``)."""

    def __init__(self, client: EmrClient) -> None:
        self._c = client

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        return self._c._json("GET", f"/governance/proposals/{proposal_id}")

    def propose(self, kind: str, subject: str, name: str | None = None) -> dict[str, Any]:
        """Propose to admit (``kind`` "admit", with ``name``) or remove ("remove") the
        hospital whose node signs as ``subject`` (hospital token; carries this vote)."""
        body: dict[str, Any] = {"kind": kind, "subject": subject}
        if name is not None:
            body["name"] = name
        return self._c._json("POST", "/governance/proposals", json=body)

    def vote(self, proposal_id: int) -> dict[str, Any]:
        """Vote as the node's hospital (hospital token)."""
        return self._c._json("POST", f"/governance/proposals/{proposal_id}/vote")


class WalletsApi:
    """Patients' recoverable wallets through the node (``EmrClient.wallets``)."""

    def __init__(self, client: EmrClient) -> None:
        self._c = client

    def create(
        self, owner: str, guardians: Sequence[str], threshold: int, delay: int
    ) -> dict[str, Any]:
        """Create a wallet (hospital token); returns {address, tx_hash}."""
        body = {"owner": owner, "guardians": list(guardians), "threshold": threshold}
        return self._c._json("POST", "/wallets", json={**body, "delay": delay})

    def show(self, address: str) -> dict[str, Any]:
        return self._c._json("GET", f"/wallets/{address}")

    def typed_data(self, address: str) -> dict[str, Any]:
        return self._c._json("GET", f"/wallets/{address}/typed-data")

    def approve(
        self, address: str, guardian: LocalAccount, new_owner: str, *, deadline_in: int = 3600
    ) -> dict[str, Any]:
        """Sign ApproveRecovery as ``guardian`` and have the node relay it."""
        td = self.typed_data(address)
        message = {"newOwner": new_owner, "nonce": td["nonce"], "deadline": _now() + deadline_in}
        signed = Account.sign_typed_data(
            guardian.key, full_message=_wallet_message("ApproveRecovery", message, td)
        )
        body = {
            "new_owner": new_owner,
            "guardian": guardian.address,
            "deadline": message["deadline"],
            "signature": "0x" + signed.signature.hex(),
        }
        return self._c._json("POST", f"/wallets/{address}/recovery/approvals", json=body)

    def cancel(
        self, address: str, owner: LocalAccount, *, deadline_in: int = 3600
    ) -> dict[str, Any]:
        """Sign CancelRecovery as the wallet's ``owner`` and have the node relay it."""
        td = self.typed_data(address)
        message = {"nonce": td["nonce"], "deadline": _now() + deadline_in}
        signed = Account.sign_typed_data(
            owner.key, full_message=_wallet_message("CancelRecovery", message, td)
        )
        body = {"deadline": message["deadline"], "signature": "0x" + signed.signature.hex()}
        return self._c._json("POST", f"/wallets/{address}/recovery/cancel", json=body)

    def finalize(self, address: str) -> dict[str, Any]:
        return self._c._json("POST", f"/wallets/{address}/recovery/finalize")


def _now() -> int:
    return int(time.time())


def _wallet_message(primary: str, message: dict[str, Any], td: dict[str, Any]) -> dict[str, Any]:
    types = {"EIP712Domain": td["types"]["EIP712Domain"], primary: td["types"][primary]}
    return {"types": types, "primaryType": primary, "domain": td["domain"], "message": message}
