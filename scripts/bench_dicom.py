"""DICOM C-STORE throughput: pydicom's bundled test files (those the node can store, looped
to ``--instances`` instances, each with a new SOP Instance UID and a wallet address as
PatientID) pushed by pynetdicom's SCU, in a separate process, to the Storage SCP of
``emr-node run`` (the embedded default). In the same run, the ceiling: a bare pynetdicom
SCP (its own process) with the node's presentation contexts that answers Success without
parsing or storing anything.

    .venv/bin/python scripts/bench_dicom.py [--instances 300] [--associations 1]

Reports instances/s and MB/s (Part 10 bytes sent) for each, and the node's share of the
ceiling. One association sends its instances one after the other (a modality's way);
``--associations N`` runs N SCU processes at once (N modalities), each with its share.
Nothing is downloaded: only the files in the pydicom wheel are used.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path[:0] = [str(SCRIPTS), str(ROOT)]

from bench_http import free_port, start_node, stop  # noqa: E402 - scripts/ is on the path

SCU_AE = "BENCHSCU"
SCP_AE = "EMRNODE"


def instances(count: int) -> list[bytes]:
    """``count`` Part 10 instances from the bundled files the node can store, each a new
    instance (SOP Instance UID) of a patient named by wallet address."""
    import pydicom
    from eth_account import Account
    from pydicom.uid import generate_uid

    from node.dicom.instance import InvalidInstance, parse_instance

    folder = Path(pydicom.data.__file__).parent / "test_files"
    sources = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            parse_instance(path.read_bytes())
        except InvalidInstance:
            continue
        sources.append(pydicom.dcmread(path))
    patients = [Account.create().address for _ in range(10)]
    out = []
    for i in range(count):
        ds = sources[i % len(sources)]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patients[i % len(patients)]
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def scu(host: str, port: int, files: list[Path]) -> dict[str, Any]:
    """One association sending ``files`` one after the other, once the parent says go
    (after every SCU process has read its files and associated)."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(f) for f in files]
    ae = AE(ae_title=SCU_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    for abstract, syntax in dict.fromkeys(
        (ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets
    ):
        ae.add_requested_context(abstract, syntax)
    assoc = ae.associate(host, port, ae_title=SCP_AE)
    if not assoc.is_established:
        raise RuntimeError("association not established")
    # As a modality should: without it each request waits out the peer's delayed ACK.
    sock = assoc.dul.socket.socket  # type: ignore[union-attr]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("READY", flush=True)
    sys.stdin.readline()
    started = time.time()
    statuses = []
    try:
        for f, ds in zip(files, datasets, strict=True):
            if not assoc.is_established:
                print(f"association lost before {f.name}", file=sys.stderr)
                break
            statuses.append(int(assoc.send_c_store(ds).get("Status", -1)))
    finally:
        finished = time.time()
        assoc.release()
    return {
        "instances": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "started": started,
        "finished": finished,
        "failed": sum(1 for s in statuses if s != 0) + len(files) - len(statuses),
    }


def bare_scp(port: int) -> None:
    """The ceiling: the node's contexts, association limits and socket options, no
    parsing, no storing."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
    from pynetdicom.presentation import AllStoragePresentationContexts
    from pynetdicom.transport import ThreadedAssociationServer

    class Server(ThreadedAssociationServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            client, address = super().get_request()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return client, address

    ae = AE(ae_title=SCP_AE)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.require_calling_aet = [SCU_AE]
    ae.maximum_associations = 16
    server = ae.make_server(
        ("127.0.0.1", port),
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],
        server_class=Server,
    )
    server.serve_forever()


def run_scu(port: int, files: list[Path], associations: int) -> dict[str, Any]:
    """``associations`` SCU processes (the load must not share the node's GIL, nor one
    another's), each with its share of ``files``; timed from the first one's start to the
    last one's end."""
    procs = []
    for i in range(associations):
        listing = files[0].parent / f"share-{i}.json"
        listing.write_text(json.dumps([str(f) for f in files[i::associations]]))
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "scu", str(port), str(listing)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:  # every one associated and ready
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("an SCU could not associate")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("an SCU failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "instances": sum(r["instances"] for r in results),
        "bytes": sum(r["bytes"] for r in results),
        "seconds": max(r["finished"] for r in results) - min(r["started"] for r in results),
        "failed": sum(r["failed"] for r in results),
    }


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def line(name: str, r: dict[str, Any], ceiling: dict[str, Any] | None = None) -> str:
    rate = r["instances"] / r["seconds"]
    mbps = r["bytes"] / r["seconds"] / 1e6
    text = (
        f"{name:<28} {r['instances']:>5} instances in {r['seconds']:6.2f} s: "
        f"{rate:8.1f} instances/s, {mbps:6.2f} MB/s, {r['failed']} failed"
    )
    if ceiling is not None:
        text += f" ({100 * rate / (ceiling['instances'] / ceiling['seconds']):.0f}% of ceiling)"
    return text


def main() -> None:
    logging.basicConfig(level=logging.WARNING)  # pynetdicom's aborts and refusals
    if len(sys.argv) > 1 and sys.argv[1] == "scu":
        port, listing = int(sys.argv[2]), Path(sys.argv[3])
        files = [Path(p) for p in json.loads(listing.read_text())]
        print(json.dumps(scu("127.0.0.1", port, files)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bare-scp":
        bare_scp(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--associations", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        work = Path(tmp)
        (work / "files").mkdir()
        files = []
        for i, data in enumerate(instances(args.instances)):
            path = work / "files" / f"{i:05d}.dcm"
            path.write_bytes(data)
            files.append(path)
        total = sum(len(f.read_bytes()) for f in files)
        print(f"{len(files)} instances, {total / 1e6:.2f} MB, {args.associations} association(s)")

        # The ceiling: a bare SCP in its own process.
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, __file__, "bare-scp", str(bare_port)])
        try:
            wait_port(bare_port)
            ceiling = run_scu(bare_port, files, args.associations)
        finally:
            bare.terminate()
            bare.wait(timeout=30)
        print(line("ceiling (bare SCP)", ceiling))

        # The node: `emr-node run`, its Storage SCP enabled.
        data_dir = work / "node"
        data_dir.mkdir()
        dicom_port = free_port()
        env = {
            "EMR_DICOM__ENABLED": "true",
            "EMR_DICOM__PORT": str(dicom_port),
            "EMR_DICOM__AE_TITLE": SCP_AE,
            "EMR_DICOM__ALLOWED_CALLING_AES": json.dumps([SCU_AE]),
        }
        node = start_node(ROOT, data_dir, free_port(), free_port(), None, env)
        try:
            wait_port(dicom_port)
            result = run_scu(dicom_port, files, args.associations)
        except RuntimeError:
            print((data_dir / "node.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop(node)
        print(line("emr-node run (Storage SCP)", result, ceiling))
        print(json.dumps({"ceiling": ceiling, "node": result, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
