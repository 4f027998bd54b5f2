"""Fast C-STORE data phase: P-DATA-TF PDUs written from the file straight to the socket.

pynetdicom turns every PDU into a primitive, queues it to its DUL thread, runs
it through the state machine and sends it with its own copy; at the 16 KB PDUs
most peers ask for, that is ~1600 round trips through Python per 26 MB image
and caps throughput near 200 MB/s. Here the PDU headers are packed into one
large buffer around data read (``readinto``) directly from the file, and the
buffer goes out in one ``sendall``. The DUL thread keeps reading the socket, so
the C-STORE response and any A-ABORT are handled by pynetdicom as usual.

Only plain TCP uses this path: an ``SSLSocket`` must not be written by one
thread while another reads it, so TLS associations use pynetdicom's own path.
"""

from __future__ import annotations

import ssl
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kiosk.net.nodes import DUL_LOOP_DELAY, quick_ack

if TYPE_CHECKING:
    from pynetdicom.association import Association

BIG_MESSAGE = 1024 * 1024
SLOW_POLL = 0.001  # pynetdicom's own default
BATCH_BYTES = 4 * 1024 * 1024  # data per sendall: big enough to amortise Python, small enough for progress
UNLIMITED_FRAGMENT = 1024 * 1024  # fragment size when the peer sets no maximum PDU length
_PDU = struct.Struct(">BBIIBB")  # PDU type, reserved, PDU length, PDV item length, context ID, control header
HEADER = _PDU.size

# Message control header bits (PS3.8 E.2): command/data, last fragment.
DATA, DATA_LAST, COMMAND_LAST = 0x00, 0x02, 0x03


def _fragment_size(max_pdu: int) -> int:
    return UNLIMITED_FRAGMENT if max_pdu == 0 else max_pdu - 6


def _send_pdus(sock, context_id: int, data_source, length: int, fragment: int, last_bits: int, more_bits: int,
               progress: Callable[[int], None] | None) -> None:
    """Send ``length`` bytes from ``data_source.readinto`` as PDUs of at most ``fragment`` data bytes."""
    # Sized to the message when it is smaller than a batch: a zeroed 4 MB buffer
    # per 50 KB instance cost more than sending it.
    per_batch = max(1, min(BATCH_BYTES // fragment, -(-length // fragment)))
    buffer = bytearray(per_batch * (HEADER + fragment))
    view = memoryview(buffer)
    remaining = length
    while remaining > 0:
        used = 0
        for _ in range(per_batch):
            size = min(fragment, remaining)
            remaining -= size
            bits = last_bits if remaining == 0 else more_bits
            _PDU.pack_into(buffer, used, 0x04, 0, size + 6, size + 2, context_id, bits)
            used += HEADER
            got = data_source.readinto(view[used:used + size])
            if got != size:
                raise OSError(f"file shrank while sending ({got} of {size} bytes read)")
            used += size
            if remaining == 0:
                break
        sock.sendall(view[:used])
        if progress:
            progress(used)


def install(assoc: "Association", progress: Callable[[int], None] | None = None) -> bool:
    """Make ``assoc`` send file-backed C-STORE requests through this module; False under TLS.

    ``progress(n)`` is called with the bytes put on the wire after each batch.
    """
    if isinstance(assoc.dul.socket.socket, ssl.SSLSocket):
        return False
    from io import BytesIO

    from pynetdicom import evt
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dsutils import encode

    original = assoc.dimse.send_msg

    def send_msg(primitive, context_id: int) -> None:
        source = getattr(primitive, "_dataset_path", None)
        if source is None or primitive.MessageIDBeingRespondedTo is not None:
            original(primitive, context_id)
            return
        message = C_STORE_RQ()
        message.primitive_to_message(primitive)
        message.context_id = context_id
        evt.trigger(assoc, evt.EVT_DIMSE_SENT, {"message": message})
        fragment = _fragment_size(assoc.dimse.maximum_pdu_size)
        sock = assoc.dul.socket.socket
        command = encode(message.command_set, True, True)
        _send_pdus(sock, context_id, BytesIO(command), len(command), fragment, COMMAND_LAST, 0x01, None)
        path, offset = source
        with open(Path(path), "rb", buffering=0) as handle:
            length = handle.seek(0, 2) - offset
            handle.seek(offset)
            # While a big image streams, pynetdicom's fast-polling DUL thread only burns
            # CPU the peer needs; 1 ms more for its response does not matter then.
            assoc.dul._run_loop_delay = SLOW_POLL if length > BIG_MESSAGE else DUL_LOOP_DELAY
            _send_pdus(sock, context_id, handle, length, fragment, DATA_LAST, DATA, progress)
        quick_ack(sock)

    assoc.dimse.send_msg = send_msg
    return True
