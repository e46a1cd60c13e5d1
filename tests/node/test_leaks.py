"""No response, header or log line carries key material, PHI or a credential.

One full run against a node served over real HTTP: token creation, uploads, a consent
granted by EIP-712 signature, reads (granted, denied, by the patient), revocation,
break-glass, an anonymous zero-knowledge read, erasure, logout, health and audit, and a
series of errors. Every log record of the node's packages at DEBUG (and uvicorn's error and
access logs) and every response status line, header and body is captured; then each secret
is looked for in every encoding it could take. The only places a secret may appear are the
ones the API exists for: a token in the response that creates it, a session in the login
response, a record's content in a read of it by someone allowed to read it.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from eth_account import Account

from hsm.abc import WrappedKey
from hsm.software import SoftwareKeyStore
from node.api.app import create_app
from node.client import ApiError, EmrClient, Scope
from node.settings import ApiSettings, ChainSettings, HSMSettings, Settings, ZkSettings
from node.wiring import CACHE_KEY_LABEL, Node, build_node
from tests.node.conftest import RunningNode, key_backend
from tests.node.production import TEST_ZK_KEYS, free_port
from tests.node.zkaccess.helpers import allow, issue, prover

NODE_LOGGERS = ("node", "storage", "hsm", "zk", "fastapi", "starlette")


# -- capture ---------------------------------------------------------------------------


@dataclass
class Captured:
    method: str
    path: str
    query: str
    status: int = 0
    head: bytes = b""
    body: bytearray = field(default_factory=bytearray)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


class CaptureResponses:
    """ASGI wrapper recording every response the node sends (status, headers, body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.responses: list[Captured] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = Captured(scope["method"], scope["path"], scope.get("query_string", b"").decode())

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                entry.head = b"\n".join(k + b": " + v for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                entry.body += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.responses.append(entry)


class CaptureLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name} {record.levelname} {record.getMessage()}"
        except Exception:  # a bad format string is a bug of its own; keep the raw parts
            text = f"{record.name} {record.levelname} {record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if record.stack_info:
            text += "\n" + record.stack_info
        with self._lock2:
            self.lines.append(text)


@pytest.fixture
def log_capture() -> Iterator[CaptureLogs]:
    handler = CaptureLogs()
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in NODE_LOGGERS}
    root.addHandler(handler)
    for name in NODE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        for name in ("uvicorn", "uvicorn.access"):
            logging.getLogger(name).removeHandler(handler)


@dataclass
class Served:
    node: Node
    url: str
    admin_token: str
    capture: CaptureResponses
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str | None = None) -> EmrClient:
        return EmrClient(self.url, token)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


PASSPHRASE = "passphrase-" + secrets.token_hex(12)


@pytest.fixture
def served(tmp_path: Path, log_capture: CaptureLogs) -> Iterator[Served]:
    port = free_port()
    data_dir = tmp_path / "node"
    settings = Settings(
        data_dir=data_dir,
        hospital_name="Test General",
        hsm=HSMSettings(passphrase=PASSPHRASE, scrypt_n=2**10),
        chain=ChainSettings(
            anchor_interval=0.2, access_log_interval=0.2, key_audit_anchor_interval=1.0
        ),
        api=ApiSettings(max_upload_bytes=64 * 1024, port=port),
        zk=ZkSettings(keys_dir=TEST_ZK_KEYS),
    )
    node = build_node(settings)
    capture = CaptureResponses(create_app(node))
    config = uvicorn.Config(
        capture, host="127.0.0.1", port=port, log_level="debug", access_log=True, lifespan="on"
    )
    # uvicorn's own loggers do not propagate: listen to them directly, at DEBUG.
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).addHandler(log_capture)
        logging.getLogger(name).setLevel(logging.DEBUG)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the node did not start"
        time.sleep(0.05)
    admin_token = (data_dir / "admin-token").read_text().strip()
    s = Served(node, f"http://127.0.0.1:{port}", admin_token, capture, server, thread)
    yield s
    s.stop()


# -- secrets and their encodings -------------------------------------------------------


def encodings(secret: str | bytes) -> list[bytes]:
    """The forms a secret could take in text or bytes."""
    if isinstance(secret, str):
        raw = secret.encode()
        return list(dict.fromkeys([raw, quote(secret, safe="").encode()]))
    forms = [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]
    return list(dict.fromkeys(forms))


def find(secrets_: dict[str, list[bytes]], haystack: bytes, *, text_only: bool) -> set[str]:
    found = set()
    for name, forms in secrets_.items():
        for form in forms[1:] if text_only and not forms[0].isascii() else forms:
            if form and form in haystack:
                found.add(name)
    return found


# -- the run -----------------------------------------------------------------------------


def test_no_secret_in_any_response_or_log(
    served: Served, log_capture: CaptureLogs, tmp_path: Path
) -> None:
    node = served.node
    tag = secrets.token_hex(6)
    phi = f"PHI-MARKER-{tag}"
    name = f"Jane Testpatient-{tag}"
    content = f"{phi}: {name}, HIV test positive, potassium 4.1".encode()
    bg_reason = f"BG-REASON-{tag} unconscious in ER bay 3"
    erase_reason = f"ERASE-REASON-{tag} patient request"
    bogus_token = "emr_" + secrets.token_urlsafe(30)
    bogus_session = "emrs_" + secrets.token_urlsafe(30)

    admin = served.client(served.admin_token)
    hospital_token = admin.create_token("ehr", "hospital")
    auditor_token = admin.create_token("audit", "auditor")
    hospital, auditor, public = (
        served.client(hospital_token),
        served.client(auditor_token),
        served.client(),
    )
    patient, doc, stranger, approver = (Account.create() for _ in range(4))

    # upload, anchor
    rid = hospital.upload(patient.address, content, category="lab", content_type="text/plain")[
        "record_id"
    ]
    gone = hospital.upload(patient.address, content + b" (copy)", category="lab")["record_id"]
    hospital.wait_anchored(rid, timeout=30)
    hospital.wait_anchored(gone, timeout=30)
    rows = [node.index.get_record(bytes.fromhex(r.removeprefix("0x"))) for r in (rid, gone)]
    data_keys = [node.keys.unwrap(WrappedKey(r.kek_version, r.wrapped_key)) for r in rows]

    # consent by EIP-712 signature, reads granted and denied, revocation
    public.grant(patient, doc.address, Scope.record(rid))
    doc_s, pat_s, stranger_s = public.login(doc), public.login(patient), public.login(stranger)
    assert public.read(rid, doc_s).content == content
    assert public.read(rid, pat_s).content == content
    with pytest.raises(ApiError):
        public.read(rid, stranger_s)
    public.revoke(patient, doc.address, Scope.record(rid))
    with pytest.raises(ApiError):
        public.read(rid, doc_s)

    # break-glass by a clinician of the directory, approved by another
    hospital.add_clinician(stranger.address, "physician")
    hospital.add_clinician(approver.address, "emergency")
    hospital.break_glass(
        patient.address, stranger.address, bg_reason, approved_by=approver.address, duration=600
    )
    assert public.read(rid, stranger_s).content == content

    # an anonymous zero-knowledge read
    allow(hospital, "lab", ["nurse"])
    nurse, _ = issue(hospital, "nurse")
    public.grant_class(patient, ["nurse"], Scope.category("lab"))
    assert prover(nurse, tmp_path / "zk-keys").read(public, rid).content == content

    # erasure
    hospital.erase(gone, erase_reason)

    # audit, health, key audit
    served.node.access_flusher.flush_now()
    auditor.audit_events(patient=patient.address)
    auditor.key_audit(verify=True)
    public.health()
    admin.health()
    admin.tokens()

    # errors, with secrets in the requests that cause them
    raw = httpx.Client(base_url=served.url, timeout=30)
    bearer = {"Authorization": f"Bearer {hospital_token}"}
    for response in (
        raw.get(f"/records/{rid}/content", headers={"Authorization": f"Bearer {bogus_session}"}),
        raw.get("/records", headers={"Authorization": f"Bearer {bogus_token}"}),
        raw.get("/records", headers={"Authorization": f"Basic {bogus_token}"}),
        raw.get(f"/records/{rid}/content", headers=bearer),  # a token cannot read content
        raw.get("/records/0xnot-an-id", headers=bearer),
        raw.get("/records", params={"patient": phi}, headers=bearer),
        raw.post(
            "/break-glass",
            json={"patient": phi, "clinician": name, "reason": bg_reason, "duration_seconds": -1},
            headers=bearer,
        ),
        raw.post("/break-glass", content=content, headers=bearer),  # not JSON
        raw.post(
            "/records",
            data={"patient": name, "category": "lab"},
            files={"file": ("r", content, "text/plain")},
            headers=bearer,
        ),
        raw.post(
            "/records",
            data={"patient": patient.address, "category": "lab"},
            files={"file": ("r", content * 2000, "text/plain")},  # over the limit
            headers=bearer,
        ),
        raw.post(
            f"/records/{rid}/erase",
            json={"reason": erase_reason},
            headers={"Authorization": f"Bearer {auditor_token}"},  # wrong role
        ),
        raw.get(
            "/audit/keys",
            params={"after": 2**70},
            headers={"Authorization": f"Bearer {auditor_token}"},
        ),
        raw.get("/admin/tokens", headers={"Authorization": f"Bearer {hospital_token}"}),
        raw.post("/auth/login", json={"message": name, "signature": "0x" + "00" * 65}),
    ):
        assert response.status_code < 500 or response.status_code == 503, (
            response.request.url,
            response.status_code,
            response.text,
        )
    raw.close()
    public.logout(pat_s)
    for c in (admin, hospital, auditor, public):
        c.close()
    # -- what must not appear (read while the key store is open) -----------------------
    inner = key_backend(node.keys)
    assert isinstance(inner, SoftwareKeyStore)
    key_material: dict[str, bytes] = {
        "file key": inner._file_key or b"",
        "signing key": inner._signing_key or b"",
        "cache key": node.keys.derive_secret(CACHE_KEY_LABEL),
    }
    key_material.update({f"KEK v{v}": k for v, k in inner._keks.items()})
    key_material.update({f"data key {i}": k for i, k in enumerate(data_keys)})
    key_material = {k: v for k, v in key_material.items() if v}
    assert len(key_material) >= 5
    served.stop()  # the shutdown's own logs count too

    identity = nurse.identity
    secrets_: dict[str, list[bytes]] = {
        name_: encodings(value) for name_, value in key_material.items()
    }
    secrets_.update(
        {
            "admin token": encodings(served.admin_token),
            "hospital token": encodings(hospital_token),
            "auditor token": encodings(auditor_token),
            "doc session": encodings(doc_s),
            "patient session": encodings(pat_s),
            "stranger session": encodings(stranger_s),
            "bogus token": encodings(bogus_token),
            "bogus session": encodings(bogus_session),
            "passphrase": encodings(PASSPHRASE),
            "PHI marker": encodings(phi),
            "patient name": encodings(name),
            "zk identity secret": encodings(str(identity.secret))
            + encodings(identity.secret.to_bytes(32, "big")),
            "patient wallet key": encodings(bytes(patient.key)),
        }
    )
    # Where the API is meant to return a secret.
    created = {"hospital token", "auditor token"}
    sessions = {"doc session", "patient session", "stranger session"}
    content_read = {"PHI marker", "patient name"}

    problems: list[str] = []
    for line in log_capture.lines:
        for leaked in find(secrets_, line.encode(), text_only=True):
            problems.append(f"log: {leaked}: {line[:300]}")
        for marker in (bg_reason, erase_reason):  # reasons are for auditors, not for logs
            if marker in line:
                problems.append(f"log: a reason: {line[:300]}")
    assert any("GET /records" in line for line in log_capture.lines)  # access logs captured
    assert any(r.status == 201 for r in served.capture.responses)
    for r in served.capture.responses:
        allowed: set[str] = set()
        if r.route == "POST /admin/tokens" and r.status < 300:
            allowed |= created
        if r.route == "POST /auth/login" and r.status < 300:
            allowed |= sessions
        if r.method == "GET" and r.path.endswith("/content") and r.status == 200:
            allowed |= content_read
        for leaked in find(secrets_, bytes(r.head) + b"\n" + bytes(r.body), text_only=False):
            if leaked not in allowed:
                problems.append(f"response {r.route} {r.status}: {leaked}: {bytes(r.body)[:300]!r}")
    assert not problems, "\n".join(problems)


# -- /health -----------------------------------------------------------------------------


def test_health_details_are_for_operators_only(
    embedded_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    rn = embedded_node
    node = rn.node
    admin = rn.client(rn.admin_token)
    hospital_token = admin.create_token("ehr", "hospital")
    auditor_token = admin.create_token("audit", "auditor")
    session = rn.client().login(Account.create())
    secret = "SECRET-DETAIL mysql://root:hunter2@db.internal/emr"

    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError(secret)

    # A component probe and a worker fail with an internal message.
    monkeypatch.setattr(node.index, "count_pending_anchors", broken)
    monkeypatch.setattr(node.index, "pending_erasures", broken)
    deadline = time.monotonic() + 20
    while node.eraser.last_error is None:
        assert time.monotonic() < deadline, "the eraser never ran"
        time.sleep(0.05)

    def health(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{rn.url}/health", headers=headers, timeout=10)

    deadline = time.monotonic() + 10
    while health(None).json() != {"status": "degraded"}:  # anonymous answers live 1 s
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for caller in (None, hospital_token, session, "emr_" + "x" * 43, "garbage"):
        response = health(caller)
        assert response.status_code == 200
        assert response.json() == {"status": "degraded"}, caller
        assert "SECRET" not in response.text and "hunter2" not in response.text
    for operator in (rn.admin_token, auditor_token):
        report = health(operator).json()
        assert report["status"] == "degraded"
        assert report["components"]["index"] == {"ok": False, "error": f"RuntimeError: {secret}"}
        assert report["workers"]["eraser"]["last_error"] == f"RuntimeError: {secret}"
        assert report["workers"]["eraser"]["running"] is True
    admin.close()
