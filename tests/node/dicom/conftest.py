"""Fixtures of the DICOM tests: pydicom's bundled test files (only those in the wheel:
nothing is downloaded), a node with the Storage SCP enabled on a free port, and a
pynetdicom SCU acting as the modality."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.dicom.dicomweb import parse_multipart_related
from node.dicom.ingest import DICOM_SYSTEM_PREFIX, issuer_system
from node.dicom.instance import InvalidInstance, parse_instance
from node.settings import DicomSettings
from tests.node.conftest import RunningNode, make_settings, start_node

TEST_FILES_DIR = Path(pydicom.data.__file__).parent / "test_files"
MODALITY_AE = "MODALITY"
NODE_AE = "EMRNODE"


def bundled_files() -> list[Path]:
    """The bundled test files the node can store (complete Part 10 instances with the UIDs
    and a PatientID); the others are refused, which tests elsewhere check."""
    files = []
    for path in sorted(TEST_FILES_DIR.glob("*.dcm")):
        try:
            parse_instance(path.read_bytes())
        except InvalidInstance:
            continue
        files.append(path)
    return files


def read(path: Path | bytes) -> Dataset:
    data = path.read_bytes() if isinstance(path, Path) else path
    return pydicom.dcmread(io.BytesIO(data))


def encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def fresh_copy(name: str, **attributes: object) -> Dataset:
    """A bundled file as a new instance (new SOP Instance UID), with ``attributes`` set."""
    ds = read(TEST_FILES_DIR / name)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def link(rn: RunningNode, patient_id: str, issuer: str | None, calling_ae: str) -> LocalAccount:
    """A new patient wallet, linked to ``patient_id`` where the node looks it up."""
    account = Account.create()
    system = issuer_system(issuer) if issuer else DICOM_SYSTEM_PREFIX + calling_ae
    rn.node.patients.link(system, patient_id, account.address, source="test")
    return account


@dataclass
class Modality:
    """A pynetdicom SCU pushing to the node's SCP."""

    host: str
    port: int
    ae_title: str = MODALITY_AE
    called: str = NODE_AE

    def _ae(self, contexts: list[tuple[str, str]]) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for abstract, syntax in dict.fromkeys(contexts):
            ae.add_requested_context(abstract, syntax)
        return ae

    def echo(self) -> int | None:
        ae = self._ae([(Verification, "1.2.840.10008.1.2")])
        assoc = ae.associate(self.host, self.port, ae_title=self.called)
        if not assoc.is_established:
            return None
        try:
            status = assoc.send_c_echo()
            return int(status.Status) if "Status" in status else None
        finally:
            assoc.release()

    def store(self, datasets: list[Dataset]) -> list[Dataset] | None:
        """One association; each C-STORE's response status data set (Status and, for a
        failure, ErrorComment). None: the association was not established."""
        contexts = [(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets]
        ae = self._ae(contexts)
        assoc = ae.associate(self.host, self.port, ae_title=self.called)
        if not assoc.is_established:
            return None
        try:
            return [assoc.send_c_store(ds) for ds in datasets]
        finally:
            assoc.release()


def dicom_settings(**overrides: object) -> DicomSettings:
    values: dict[str, object] = {
        "enabled": True,
        "port": 0,
        "ae_title": NODE_AE,
        "allowed_calling_aes": [MODALITY_AE],
    }
    return DicomSettings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dicom_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One embedded node for a module, its Storage SCP on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("dicom") / "node"
    settings = make_settings(data_dir).model_copy(update={"dicom": dicom_settings()})
    rn = start_node(data_dir, settings)
    yield rn
    rn.stop()


@pytest.fixture
def modality(dicom_node: RunningNode) -> Modality:
    listener = next(x for x in dicom_node.node.listeners if x.name == "dicom")
    host, port = listener.address
    return Modality(host, port)


def wado(
    http: httpx.Client, session: str, study: str, series: str, sop: str, **params: str
) -> list[bytes]:
    """WADO-RS as a wallet session: the instances of the multipart/related answer."""
    r = http.get(
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}",
        params=params,
        headers={"Authorization": f"Bearer {session}"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    parts = parse_multipart_related(r.headers["content-type"], r.content, max_parts=10)
    assert {p.content_type for p in parts} == {"application/dicom"}
    return [p.content for p in parts]
