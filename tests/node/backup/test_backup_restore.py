"""Back a node up while it runs, wipe it, restore it: every record readable and verified,
the audit mirror equal to the chain, and no key material in clear in the archive.

Embedded default: the chain lives in the data directory, so the archive carries it and the
node comes back as it was at the backup. Production (MySQL + IPFS + hardhat): the chain
goes on after the backup (anchors of queued records, a grant, a revocation, reads, a
break-glass); the restore must catch up from it without anchoring anything twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from pydantic import BaseModel, SecretStr
from typer.testing import CliRunner

from node.backup.archive import MANIFEST, BackupManifest, create_backup, read_manifest
from node.cli.main import app
from node.client import ApiError, EmrClient, Scope
from node.settings import Settings
from tests.node.conftest import RunningNode, make_settings, start_node
from tests.node.production import ProductionServices, drop_test_database

runner = CliRunner()


def _env(settings: Settings) -> dict[str, str]:
    """``settings`` as the EMR_ environment the CLI reads."""
    env: dict[str, str] = {}

    def walk(prefix: str, model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(key + "__", value)
            elif value is None:
                continue
            elif isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            elif isinstance(value, list | dict):
                env[key] = json.dumps(value)
            elif isinstance(value, bool):
                env[key] = "true" if value else "false"
            else:
                env[key] = str(value)

    walk("EMR_", settings)
    return env


def _cli(settings: Settings, *args: str) -> Any:
    return runner.invoke(app, list(args), env=_env(settings))


def _archive_bytes(archive: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(archive, "r:gz") as tar:
        return [
            (m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        ]


def _key_material(rn: RunningNode) -> list[bytes]:
    """The software key store's secrets as the running node holds them (KEKs, file key,
    signing key): none may appear in the archive."""
    inner: Any = rn.node.keys
    while not hasattr(inner, "_keks"):  # audited / metered wrappers around the store
        inner = inner._inner
    secrets = [bytes(k) for k in inner._keks.values()]
    secrets.append(bytes(inner._file_key))
    signing = inner._signing_key
    secrets.append(bytes(signing) if isinstance(signing, bytes | bytearray) else b"")
    return [s for s in secrets if len(s) >= 16]


def _settings(kind: str, data_dir: Path, request: pytest.FixtureRequest) -> Settings:
    if kind == "embedded":
        return make_settings(data_dir, anchor_interval=3600.0)
    services: ProductionServices = request.getfixturevalue("production_services")
    return services.settings(
        data_dir, chain={"anchor_interval": 3600.0, "key_audit_anchor_interval": 3600.0}
    )


@pytest.mark.parametrize(
    "kind", ["embedded", pytest.param("production", marks=pytest.mark.integration)]
)
def test_backup_wipe_restore(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data_dir = tmp_path / "node"
    settings = _settings(kind, data_dir, request)
    archive = tmp_path / "backup.tar.gz"
    patient, doc, doc2 = Account.create(), Account.create(), Account.create()
    head_at_stop = 0
    nurse, chief = Account.create().address, Account.create().address
    contents: dict[str, bytes] = {}

    rn = start_node(data_dir, settings)
    try:
        admin_token = rn.admin_token
        admin = rn.client(admin_token)
        hospital_token = admin.create_token("ehr", "hospital")
        auditor_token = admin.create_token("audit", "auditor")
        hospital, pub = rn.client(hospital_token), rn.client()
        hospital.add_clinician(nurse, "nurse")
        hospital.add_clinician(chief, "physician")
        for i in range(3):
            body = f"note {i} of {kind}".encode()
            contents[hospital.upload(patient.address, body, category="note")["record_id"]] = body
        rn.node.anchorer.flush_now()
        anchored = list(contents)
        pub.grant(patient, doc.address, Scope.category("note"))
        session = pub.login(doc)
        assert pub.read(anchored[0], session).content == contents[anchored[0]]
        hospital.break_glass(patient.address, nurse, "ER", approved_by=chief, record_id=anchored[1])
        rn.node.access_flusher.flush_now()
        # Queued for anchoring at the backup (anchor_interval is an hour: nothing else sends)
        queued = []
        for i in range(2):
            body = f"queued {i} of {kind}".encode()
            rid = hospital.upload(patient.address, body, category="note")["record_id"]
            contents[rid] = body
            queued.append(rid)
        assert all(hospital.receipt(r)["status"] != "anchored" for r in queued)

        key_material = _key_material(rn)
        if kind == "production":
            manifest = create_backup(rn.node.settings, archive)  # online: the node runs
        else:
            # The embedded chain's file is locked by the node that hosts it: refused
            # while it runs, taken once it is stopped.
            refused = _cli(settings, "backup", str(archive))
            assert refused.exit_code == 2 and "locked" in refused.output, refused.output
            rn.stop()
            done = _cli(settings, "backup", str(archive))
            assert done.exit_code == 0, done.output
            manifest = read_manifest(archive)

        after_backup: dict[str, Any] = {}
        if kind == "production":
            # The chain goes on: the queued records are anchored, consent changes, reads.
            rn.node.anchorer.flush_now()
            after_backup["receipts"] = {r: hospital.wait_anchored(r) for r in queued}
            pub.grant(patient, doc2.address, Scope.category("note"))
            assert pub.read(queued[0], pub.login(doc2)).content == contents[queued[0]]
            pub.revoke(patient, doc.address, Scope.category("note"))
            hospital.break_glass(patient.address, nurse, "ER again", approved_by=chief)
            rn.node.access_flusher.flush_now()
            head_at_stop = rn.node.chain.head_block()
        for client in (admin, hospital, pub):
            client.close()
    finally:
        rn.stop()  # production: drops the node's database (a second stop is harmless)

    # -- the archive: every member hashed, chain height recorded, nothing secret in clear
    assert read_manifest(archive).members == manifest.members
    assert manifest.block_height >= 1 and manifest.pinned_cids == len(contents)
    names = {n for n, _ in _archive_bytes(archive)}
    assert names == {MANIFEST, *manifest.members}
    assert {"deployments/chain.json", "deployments/zk.json", "deployments/wallets.json"} <= names
    if kind == "embedded":
        assert "data/chain.sqlite" in names and "data/blobs.sqlite" in names
    else:
        assert any(n.startswith("mysql/") for n in names) and "data/chain.sqlite" not in names
    assert "keystore.pass" not in str(names) and "admin-token" not in str(names)
    secrets = [
        b"test passphrase",
        admin_token.encode(),
        hospital_token.encode(),
        auditor_token.encode(),
        session.encode(),
        *key_material,
    ]
    assert len(key_material) >= 2  # the KEK(s) and the file key were found to look for
    for name, data in _archive_bytes(archive):
        for secret in secrets:
            assert secret not in data, f"{name} holds a secret in clear"
            assert secret.hex().encode() not in data.lower(), f"{name} holds a secret in hex"

    # -- wipe, restore (CLI), refuse a second restore over it, start
    drop_test_database(settings)
    shutil.rmtree(data_dir)
    done = _cli(settings, "restore", str(archive))
    assert done.exit_code == 0, done.output
    assert "re-synced to block" in done.output
    if kind == "production":
        # the two queued records were anchored after the backup: marked from the chain
        assert "2 records in 1 batches marked anchored from the chain" in done.output
        assert f"pinned CIDs: {len(contents)} of {len(contents)} present" in done.output
    again = _cli(settings, "restore", str(archive))
    assert again.exit_code == 2 and "not empty" in again.output

    # The admin token is not in the archive: the operator kept it apart (start_node reads it)
    (data_dir / "admin-token").write_text(admin_token + "\n")
    rn = start_node(data_dir, settings)
    try:
        assert rn.node.hospital == rn.node.chain.hospital
        auditor = rn.client(auditor_token)  # tokens live in the restored database
        hospital, pub = rn.client(hospital_token), rn.client()
        rn.node.anchorer.flush_now()  # embedded: the queued records are anchored now
        for rid, body in contents.items():
            receipt = hospital.wait_anchored(rid)
            if kind == "production" and rid in queued:
                assert receipt == after_backup["receipts"][rid]  # the same batch: not twice
            verdict = auditor.verify(rid, "0x" + hashlib.sha256(body).hexdigest())
            assert verdict["verified"], verdict
        for rid in contents:  # each record anchored exactly once, on the restored chain
            anchored_events = auditor.audit_events(record_id=rid)
            assert [e["event"] for e in anchored_events].count("RecordAnchored") == 1
        if kind == "production":
            assert pub.read(anchored[2], pub.login(doc2)).content == contents[anchored[2]]
            with pytest.raises(ApiError) as refused:  # revoked after the backup
                pub.read(anchored[2], pub.login(doc))
            assert refused.value.status == 403
            assert rn.node.chain.head_block() >= head_at_stop
        else:
            assert pub.read(anchored[2], pub.login(doc)).content == contents[anchored[2]]
        # the audit mirror equals the chain, up to the head
        rn.node.access_flusher.flush_now()
        head = rn.node.chain.head_block()
        rn.node.mirror_worker.flush_now()
        mirror = auditor.verify_mirror()
        assert mirror["consistent"] and mirror["cursor"] >= head, mirror
        on_chain = rn.node.chain.audit_events(to_block=mirror["cursor"])
        assert mirror["checked"] == len(on_chain) > 0
        kinds = {e.event for e in on_chain}
        assert {"RecordAnchored", "ConsentGranted", "BreakGlassOpened", "AccessRecorded"} <= kinds
        for client in (auditor, hospital, pub):
            client.close()
    finally:
        rn.stop()


def test_restore_checks_the_archive_before_writing(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    settings = make_settings(data_dir)
    rn = start_node(data_dir, settings)
    try:
        with EmrClient(rn.url, rn.admin_token) as admin:
            token = admin.create_token("ehr", "hospital")
        with rn.client(token) as hospital:
            hospital.upload(Account.create().address, b"x", category="note")
    finally:
        rn.stop()
    archive = tmp_path / "b.tar.gz"
    done = _cli(settings, "backup", str(archive))
    assert done.exit_code == 0, done.output
    assert "not archived (secrets in clear): admin-token" in done.output
    # over a node's data: refused, nothing written
    refused = _cli(settings, "restore", str(archive))
    assert refused.exit_code == 2 and "not empty" in refused.output
    with tarfile.open(archive) as tar:
        manifest = BackupManifest.from_json(
            tar.extractfile(MANIFEST).read().decode()  # type: ignore[union-attr]
        )
    # a damaged member: same names, one byte changed
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "pinned-cids.txt":
                data = data.replace(b"b", b"c", 1)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    empty = tmp_path / "empty"
    target = make_settings(empty)
    bad = _cli(target, "restore", str(damaged))
    assert bad.exit_code == 2 and "sha256 does not match" in bad.output
    assert not empty.exists() or not any(empty.iterdir())
    assert manifest.members["pinned-cids.txt"]["size"] > 0
