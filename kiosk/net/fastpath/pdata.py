"""Fast C-STORE of files: commands packed here, data written from the file straight to the socket.

pynetdicom turns every PDU into a primitive, queues it to its DUL thread, runs
it through the state machine and sends it with its own copy; at the 16 KB PDUs
most peers ask for, that is ~1600 round trips through Python per 26 MB image
and caps throughput near 200 MB/s. Here the PDU headers are packed into one
large buffer around data read (``readinto``) directly from the open file (or
from memory, where the caller read a small file whole), and the buffer goes
out in one ``sendall``. For small images the fixed cost per
request dominates instead; ``FileSender`` cuts it (see there). The DUL thread
keeps reading the socket, so the C-STORE response and any A-ABORT are handled
by pynetdicom as usual.

Only plain TCP uses this path: an ``SSLSocket`` must not be written by one
thread while another reads it, so TLS associations use pynetdicom's own path.
"""

from __future__ import annotations

import ssl
import struct
import time
from io import BytesIO
from typing import TYPE_CHECKING, BinaryIO, Callable

from kiosk.net.fastpath.sockets import quick_ack
from kiosk.part10 import dataset_offset

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pynetdicom.association import Association

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


def _element(tag: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element of the command group."""
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def _uid(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\0" if len(data) % 2 else data


def store_command(sop_class_uid: str, sop_instance_uid: str, message_id: int) -> bytes:
    """A C-STORE-RQ command set (PS3.7 9.3.1.1), medium priority, data set present."""
    body = b"".join((
        _element(0x0002, _uid(sop_class_uid)),
        _element(0x0100, struct.pack("<H", 0x0001)),  # Command Field: C-STORE-RQ
        _element(0x0110, struct.pack("<H", message_id & 0xFFFF)),
        _element(0x0700, struct.pack("<H", 0x0000)),  # Priority: medium
        _element(0x0800, struct.pack("<H", 0x0001)),  # Command Data Set Type: present (any but 0x0101)
        _element(0x1000, _uid(sop_instance_uid)),
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


class FileSender:
    """C-STORE requests for Part 10 files, sent as they are on one plain-TCP association.

    pynetdicom's ``send_c_store`` reads each file's meta group with pydicom,
    builds and encodes the command through its DIMSE classes and pauses its
    association reactor around every request; for a 50 KB image that is most
    of the kiosk's work. Here the command is packed directly, the data set
    offset is read from the file itself, and the reactor is paused once for
    the whole run of requests (it must not take the responses; it would
    only look for the peer's requests, which a Storage SCP does not send).
    The response is still decoded and checked by pynetdicom.
    """

    def __init__(self, assoc: "Association") -> None:
        self.assoc = assoc
        self.progress: Callable[[int], None] | None = None  # called with the bytes put on the wire
        self.sock = assoc.dul.socket.socket
        self.fragment = _fragment_size(assoc.dimse.maximum_pdu_size)
        self.contexts: dict[tuple[str, str], int] = {}

    @classmethod
    def for_association(cls, assoc: "Association") -> "FileSender | None":
        """A sender for ``assoc``; None under TLS (an ``SSLSocket`` must not be written while another thread reads it)."""
        if isinstance(assoc.dul.socket.socket, ssl.SSLSocket):
            return None
        return cls(assoc)

    def send(self, source: BinaryIO, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
             message_id: int) -> "Dataset | None":
        """Send one Part 10 file (``source``, open at its start); the response status as ``send_c_store`` returns it.

        None when this file needs pynetdicom's own path (an unusual meta group).
        Raises ``OSError`` when the file cannot be read or the connection fails.
        """
        offset = dataset_offset(source)
        if offset is None:
            return None
        length = source.seek(0, 2) - offset
        source.seek(offset)
        context_id = self._context(sop_class_uid, transfer_syntax)
        command = store_command(sop_class_uid, sop_instance_uid, message_id)
        self._pause()
        _send_pdus(self.sock, context_id, BytesIO(command), len(command), self.fragment, COMMAND_LAST, 0x01, None)
        _send_pdus(self.sock, context_id, source, length, self.fragment, DATA_LAST, DATA, self.progress)
        quick_ack(self.sock)
        _, response = self.assoc.dimse.get_msg(block=True)
        if response is None:
            self.assoc._handle_no_response()
            from pydicom.dataset import Dataset

            return Dataset()
        return self.assoc._check_received_status(response)

    def close(self) -> None:
        """Let the association's reactor run again."""
        self.assoc._reactor_checkpoint.set()

    def _context(self, sop_class_uid: str, transfer_syntax: str) -> int:
        key = (sop_class_uid, transfer_syntax)
        if key not in self.contexts:
            context = self.assoc._get_valid_context(sop_class_uid, transfer_syntax, "scu", allow_conversion=False)
            self.contexts[key] = context.context_id
        return self.contexts[key]

    def _pause(self) -> None:
        # As pynetdicom does before each request, but only when something (its own
        # send_c_store for a converted file) has let the reactor run again.
        checkpoint = self.assoc._reactor_checkpoint
        if checkpoint.is_set():
            checkpoint.clear()
            while not self.assoc._is_paused:
                time.sleep(0.0001)
