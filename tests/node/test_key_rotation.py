"""KEK rotation on a running node (embedded default and production backends): rotate during
an upload burst, the background job re-wraps every data key, old KEKs are destroyed only
once nothing refers to them, and no record is unreadable at any moment."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from hsm.abc import WrappedKey
from hsm.exceptions import KeyNotFound
from node.cli.main import app
from node.client import ApiError, EmrClient
from node.flows.read_record import open_record
from node.flows.rotate_keys import retire_unused_keks, rewrap_batch, rotation_status
from node.wiring import Node
from storage.models import KeyUpdate
from tests.node.conftest import RunningNode


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _read_all(node: Node) -> dict[bytes, bytes]:
    """Open every indexed record (row read just before opening, as the read path does)."""
    contents: dict[bytes, bytes] = {}
    for listed in node.index.list_records(limit=100_000):
        row = node.index.get_record(listed.record_id)
        contents[row.record_id] = open_record(row, blobs=node.blobs, keys=node.keys)
    return contents


def _hospital_token(rn: RunningNode) -> str:
    with rn.client(rn.admin_token) as admin:
        return admin.create_token("ehr", "hospital")


def test_rotate_twice_during_an_upload_burst(running_node: RunningNode) -> None:
    rn, node = running_node, running_node.node
    node.kek_rewrap.grace = 1.0  # seconds an old KEK stays after its last record moved
    token = _hospital_token(rn)
    patient = Account.create()
    uploaded: dict[str, bytes] = {}
    errors: list[BaseException] = []
    burst_over = threading.Event()

    def upload(worker: int) -> None:
        try:
            with EmrClient(rn.url, token) as client:
                for n in range(15):
                    content = f"worker {worker} record {n} ".encode() * 20
                    rec = client.upload(patient.address, content, category="lab")
                    uploaded[rec["record_id"]] = content
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read_continuously() -> None:
        try:
            while not burst_over.is_set():
                _read_all(node)  # raises if any record is unreadable at this moment
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(4)]
    reader = threading.Thread(target=read_continuously)
    for t in [*threads, reader]:
        t.start()
    with rn.client(rn.admin_token) as admin:
        start = admin.key_status()["current"]
        time.sleep(0.3)
        assert admin.rotate_keys() == start + 1
        time.sleep(0.5)
        assert admin.rotate_keys() == start + 2
        for t in threads:
            t.join()
        burst_over.set()
        reader.join()
        assert errors == []
        assert len(uploaded) == 60

        _wait_for(
            lambda: (
                (s := admin.key_status())["pending"] == 0
                and s["retired"] == list(range(1, start + 2))
            ),
            60,
            "re-wrap and retirement did not finish",
        )
        status = admin.key_status()
        assert status["current"] == start + 2
        assert status["live"] == [start + 2]
        assert status["usage"] == {str(start + 2): 60}
        assert status["unreadable"] == 0 and status["rewrap_error"] is None

    # Every record reads back intact, directly and through the patient's SIWE read.
    contents = _read_all(node)
    assert {"0x" + rid.hex(): c for rid, c in contents.items()} == uploaded
    with rn.client() as public:
        session = public.login(patient)
        rid, content = next(iter(uploaded.items()))
        assert public.read(rid, session).content == content
    # The retired KEKs are gone for good.
    row = node.index.get_record(next(iter(contents)))
    for version in range(1, start + 2):
        with pytest.raises(KeyNotFound):
            node.keys.unwrap(WrappedKey(version, row.wrapped_key))


def test_old_kek_is_kept_while_a_record_refers_to_it(running_node: RunningNode) -> None:
    rn, node = running_node, running_node.node
    node.rewrap_worker.stop()  # drive the job by hand
    with EmrClient(rn.url, _hospital_token(rn)) as hospital:
        for n in range(5):
            hospital.upload(Account.create().address, b"record %d" % n, category="lab")
    old = node.keys.current_kek_version
    new = node.keys.rotate_kek()
    assert retire_unused_keks(node.keys, node.index) == []  # five records still use it
    assert rewrap_batch(node.keys, node.index, 2) == 2  # resumable, a batch at a time
    assert rotation_status(node.keys, node.index).pending == 3
    assert retire_unused_keks(node.keys, node.index) == []
    assert rewrap_batch(node.keys, node.index, 100) == 3
    assert rewrap_batch(node.keys, node.index, 100) == 0
    assert len(_read_all(node)) == 5
    assert retire_unused_keks(node.keys, node.index) == [old]
    status = rotation_status(node.keys, node.index)
    assert (status.current, status.pending, status.usage) == (new, 0, {new: 5})
    assert old in status.retired
    assert len(_read_all(node)) == 5


def test_job_waits_for_the_grace_period(running_node: RunningNode) -> None:
    node = running_node.node
    node.rewrap_worker.stop()
    job = node.kek_rewrap
    now = [0.0]
    job._clock = lambda: now[0]  # a fake clock for the grace period
    job.grace = 10.0
    old = node.keys.current_kek_version
    node.keys.rotate_kek()
    job()
    now[0] = 9.0
    job()
    assert old in node.keys.kek_versions()  # unused, but an upload may still be in flight
    now[0] = 10.5
    job()
    assert old not in node.keys.kek_versions()


def test_stale_compare_and_set_changes_nothing(running_node: RunningNode) -> None:
    rn, node = running_node, running_node.node
    node.rewrap_worker.stop()
    with EmrClient(rn.url, _hospital_token(rn)) as hospital:
        rid = bytes.fromhex(
            hospital.upload(Account.create().address, b"glucose 5.2", category="lab")["record_id"][
                2:
            ]
        )
    before = node.index.get_record(rid)
    node.keys.rotate_kek()
    # A re-wrapper that read the record at v_old while another already moved it.
    assert rewrap_batch(node.keys, node.index, 10) == 1
    moved = node.index.get_record(rid)
    stale = node.keys.wrap(node.keys.unwrap(WrappedKey(before.kek_version, before.wrapped_key)))
    update = KeyUpdate(rid, before.kek_version, stale.kek_version, stale.blob)
    assert node.index.replace_wrapped_keys([update]) == 0
    assert node.index.get_record(rid) == moved
    assert open_record(moved, blobs=node.blobs, keys=node.keys) == b"glucose 5.2"


def test_concurrent_rewrappers_lose_no_key(running_node: RunningNode) -> None:
    rn, node = running_node, running_node.node
    node.rewrap_worker.stop()
    with EmrClient(rn.url, _hospital_token(rn)) as hospital:
        for n in range(30):
            hospital.upload(Account.create().address, b"note %d" % n, category="note")
    node.keys.rotate_kek()
    changed: list[int] = []

    def rewrap() -> None:
        while n := rewrap_batch(node.keys, node.index, 7):
            changed.append(n)

    threads = [threading.Thread(target=rewrap) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(changed) == 30  # each key swapped exactly once
    assert rotation_status(node.keys, node.index).pending == 0
    assert sorted(_read_all(node).values()) == sorted(b"note %d" % n for n in range(30))


def test_key_endpoints_need_an_admin_token(running_node: RunningNode) -> None:
    rn = running_node
    with rn.client(rn.admin_token) as admin:
        hospital_token = admin.create_token("ehr", "hospital")
        auditor_token = admin.create_token("audit", "auditor")
        current = admin.key_status()["current"]
    for token, status in ((hospital_token, 403), (auditor_token, 403), (None, 401)):
        with rn.client(token) as client:
            for call in (client.rotate_keys, client.key_status):
                with pytest.raises(ApiError) as err:
                    call()
                assert err.value.status == status
    with rn.client(rn.admin_token) as admin:
        assert admin.key_status()["current"] == current  # nothing rotated


def test_cli_rotate_and_status(running_node: RunningNode) -> None:
    rn = running_node
    runner = CliRunner()
    args = ["--url", rn.url, "--token", rn.admin_token]
    status = runner.invoke(app, ["keys", "status", *args])
    assert status.exit_code == 0, status.output
    assert '"pending": 0' in status.output
    rotated = runner.invoke(app, ["keys", "rotate", *args])
    assert rotated.exit_code == 0, rotated.output
    assert f'"version": {rn.node.keys.current_kek_version}' in rotated.output
    denied = runner.invoke(app, ["keys", "rotate", "--url", rn.url, "--token", "emr_nope"])
    assert denied.exit_code == 2
