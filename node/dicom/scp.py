"""The DICOM Storage SCP: a pynetdicom application entity that answers C-ECHO and C-STORE
for the storage SOP classes, and files each instance as a record (``DicomIngest``).

Who may push: the calling AE title is what a modality says about itself, so a connection
is accepted only from a peer address in ``dicom.allowed_peers`` (checked when the TCP
connection is accepted, before any PDU is read) *and* an association only with a calling
AE title in ``dicom.allowed_calling_aes`` and our own AE title as the called one
(A-ASSOCIATE-RJ otherwise). An empty ``allowed_calling_aes`` admits nobody.
"""

from __future__ import annotations

import logging
import socket
import threading
from ipaddress import ip_address, ip_network
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from node.dicom.ingest import DicomIngest, StoreOutcome, StoreStatus
from node.listeners import ListenerAPI
from node.settings import DicomSettings

log = logging.getLogger(__name__)

# Associations served at once (one thread each); more are rejected (transient, local limit).
MAX_ASSOCIATIONS = 16


class _PeerFilteringServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server, closing connections from peers outside
    the allowed networks before any PDU is read (socketserver's ``verify_request``)."""

    allowed: tuple[Any, ...] = ()
    admit_none = False

    def get_request(self) -> tuple[socket.socket, Any]:
        client, address = super().get_request()
        # A C-STORE answer is a small PDU after the peer's data: without TCP_NODELAY, Nagle
        # and the peer's delayed ACK hold each one ~40 ms.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        try:
            peer = ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if peer.version == 6 and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        allowed = not self.admit_none and any(peer in net for net in self.allowed)
        if not allowed:
            log.warning("DICOM connection from a peer outside dicom.allowed_peers refused")
        return allowed


class DicomListener(ListenerAPI):
    """The node's Storage SCP (ListenerAPI: started and stopped with the node)."""

    name = "dicom"

    def __init__(self, settings: DicomSettings, ingest: DicomIngest) -> None:
        self._settings = settings
        self._ingest = ingest
        self._ae: AE | None = None
        self._server: _PeerFilteringServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._networks = tuple(ip_network(p, strict=False) for p in settings.allowed_peers)

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self._settings.ae_title)
        # Every storage SOP class in every transfer syntax: an instance is stored as
        # received, compressed or not (the node never decodes pixel data).
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        # Fail closed: pynetdicom treats an empty list as "anyone" (the server admits no
        # connection at all then, see start).
        ae.require_calling_aet = list(self._settings.allowed_calling_aes)
        ae.require_called_aet = True
        ae.maximum_associations = MAX_ASSOCIATIONS
        return ae

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            s = self._settings
            ae = self._application_entity()
            handlers = [(evt.EVT_C_ECHO, _echo), (evt.EVT_C_STORE, self._on_store)]
            # make_server + our own thread is what start_server(block=False) does, with a
            # server class that filters peers.
            server = ae.make_server(
                (s.host, s.port), evt_handlers=handlers, server_class=_PeerFilteringServer
            )
            ae._servers.append(server)  # as start_server does: ae.shutdown() stops it
            server.allowed = self._networks
            server.admit_none = not s.allowed_calling_aes
            if server.admit_none:
                log.warning("dicom.allowed_calling_aes is empty: every association is refused")
            thread = threading.Thread(target=server.serve_forever, name="dicom-scp", daemon=True)
            thread.start()
            self._ae, self._server, self._thread = ae, server, thread
            log.info("DICOM Storage SCP %s listening on %s:%d", s.ae_title, *self.address)

    def stop(self) -> None:
        with self._lock:
            ae, self._ae, self._server = self._ae, None, None
            if ae is None:
                return
            ae.shutdown()  # aborts open associations, stops accepting, closes the port
            if self._thread is not None:
                self._thread.join(timeout=10)
                self._thread = None

    @property
    def address(self) -> tuple[str, int]:
        server = self._server
        if server is None:
            raise RuntimeError("the DICOM listener is not running")
        sock: socket.socket = server.socket
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    def _on_store(self, event: Event) -> Dataset:
        request = event.request
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        expected = (str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID))
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # pynetdicom could not frame the received data set
            return status_dataset(
                StoreOutcome(StoreStatus.CANNOT_UNDERSTAND, "data set not readable")
            )
        outcome = self._ingest.store(data, calling_ae=calling_ae, expected=expected)
        if not outcome.stored:
            log.info("C-STORE from %s refused: 0x%04X", calling_ae, outcome.status)
        return status_dataset(outcome)


def _echo(_event: Event) -> int:
    return 0x0000


def status_dataset(outcome: StoreOutcome) -> Dataset:
    """The C-STORE response's status (and ErrorComment for a failure)."""
    status = Dataset()
    status.Status = int(outcome.status)
    if outcome.reason and not outcome.stored:
        status.ErrorComment = outcome.reason[:64]
    return status
