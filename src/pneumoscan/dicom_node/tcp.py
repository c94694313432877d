"""TCP options for the node's DICOM connections.

pynetdicom leaves Nagle's algorithm on. A DIMSE message ends in a short segment, which
Nagle holds back until the peer acknowledges the previous ones, and the peer delays that
acknowledgement (up to 40 ms on Linux): each C-STORE of a result waited for it. Measured
over the loopback, one SR and one JPEG Secondary Capture per association took 66 ms
with Nagle and 15 ms without (docs/benchmarks.md).
"""

from __future__ import annotations

import socket
from typing import Any


def send_without_delay(event: Any) -> None:
    """``evt.EVT_CONN_OPEN`` handler: every PDU goes out when written (TCP_NODELAY)."""
    connection = getattr(event.assoc.dul.socket, "socket", None)
    if connection is not None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
