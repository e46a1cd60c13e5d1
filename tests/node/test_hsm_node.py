"""A node whose keys live in a real PKCS#11 token (SoftHSM2): records are wrapped by the
token's KEK, every transaction is signed in the token, and the identity survives a
restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from node.client import EmrClient, Scope
from tests.node.production import TEST_ZK_KEYS, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN, PIN, SO_PIN = "emr-node-test", "node-pin-4411", "node-so-pin-9902"


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "hsm"
    env = {**os.environ, "EMR_HSM_SO_PIN": SO_PIN, "EMR_HSM_PIN": PIN}
    subprocess.run(
        ["bash", str(ROOT / "scripts/softhsm.sh"), "init", str(directory), TOKEN],
        env=env,
        check=True,
        capture_output=True,
    )
    return directory


def _launch(data_dir: Path, token_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        SOFTHSM2_CONF=str(token_dir / "softhsm2.conf"),
        EMR_DATA_DIR=str(data_dir),
        EMR_HSM__BACKEND="pkcs11",
        EMR_HSM__TOKEN_LABEL=TOKEN,
        EMR_HSM__PIN=PIN,
        EMR_CHAIN__ANCHOR_INTERVAL="0.3",
        EMR_ZK__KEYS_DIR=str(TEST_ZK_KEYS),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"node did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)


@pytest.mark.integration
def test_node_keys_in_softhsm(tmp_path: Path, token_dir: Path) -> None:
    data_dir, port = tmp_path / "node", free_port()
    url = f"http://127.0.0.1:{port}"
    patient, clinician = Account.create(), Account.create()
    proc = _launch(data_dir, token_dir, port)
    try:
        admin_token = (data_dir / "admin-token").read_text().strip()
        with EmrClient(url, admin_token) as admin:
            address = admin.info()["hospital"]
            hospital = EmrClient(url, admin.create_token("ehr", "hospital"))
            auditor = EmrClient(url, admin.create_token("audit", "auditor"))
        # Nothing key-like in the data directory: the token holds the KEK and the signer.
        assert not (data_dir / "keystore.json").exists()
        records = [
            hospital.upload(patient.address, f"result {i}".encode(), category="lab")["record_id"]
            for i in range(5)
        ]
        # Rotate the token's KEK twice while three threads upload; the re-wrap job then
        # moves every data key to kek-v3 in the token.
        with EmrClient(url, admin_token) as admin:

            def burst(t: int) -> list[str]:
                with EmrClient(url, hospital.token) as h:
                    return [
                        h.upload(patient.address, f"burst {t}-{i}".encode(), category="lab")[
                            "record_id"
                        ]
                        for i in range(8)
                    ]

            with ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(burst, t) for t in range(3)]
                assert admin.rotate_keys() == 2
                assert admin.rotate_keys() == 3
                burst_ids = [f.result() for f in futures]
            deadline = time.monotonic() + 60
            while (status := admin.key_status())["pending"]:
                assert time.monotonic() < deadline, status
                time.sleep(0.5)
            assert status["current"] == 3, status
            assert {int(v) for v, n in status["usage"].items() if n} == {3}, status
        with EmrClient(url) as public:
            session = public.login(patient)
            for t, ids in enumerate(burst_ids):
                got = [public.read(r, session).content for r in ids]
                assert got == [f"burst {t}-{i}".encode() for i in range(8)]
                records += ids
        hospital.wait_anchored(records[-1])
        # The anchor was sent by the token's key: RecordAnchored names msg.sender.
        [anchored] = [
            e for e in auditor.audit_events(record_id=records[-1]) if e["event"] == "RecordAnchored"
        ]
        assert anchored["args"]["hospital"] == address
        with EmrClient(url) as public:
            # A consent relayed by the node (a token-signed tx), then a wallet read.
            public.grant(patient, clinician.address, Scope.category("lab"), expires_in=3600)
            assert public.read(records[0], public.login(clinician)).content == b"result 0"
        hospital.close()
        auditor.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # Restart: same identity from the token, and every record still opens.
    proc = _launch(data_dir, token_dir, port)
    try:
        with EmrClient(url) as public:
            assert public.info()["hospital"] == address
            session = public.login(patient)
            for i, record in enumerate(records[:5]):
                assert public.read(record, session).content == f"result {i}".encode()
            assert all(public.read(r, session).status_code == 200 for r in records[5:])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
