"""HL7 v2 over MLLP: a listener a hospital's interface engine pushes results (ORU^R01),
documents (MDM^T02) and patient registrations (ADT^A04/A08) to, answered with original-mode
ACKs (AA, AE, AR with ERR segments). See docs/hl7v2.md.

- ``message``: decode, check and parse one message (python-hl7), field access.
- ``ack``: build the ACK for a message, even one that could not be parsed.
- ``mapping``: PID-3 to identifiers, ORU/MDM to an upload request, ADT to links.
- ``service``: one message in, one ACK out, through the node's upload and patient services.
- ``mllp``: the MLLP framing and the TCP listener (``ListenerAPI``).
"""
